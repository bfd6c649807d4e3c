// Prints the suite's tests as JSON, in the suite's order, for
// tests/cache_tests.rs and benches/conformance.sh: id, kind (null means
// required), whether only a browser cache runs it (the CLI skips those), and
// whether it needs undici (interim responses; undici 7 needs node >= 20.18.1).
import tests from './tests/index.mjs'

const list = []
for (const suite of tests) {
  for (const test of suite.tests) {
    list.push({
      id: test.id,
      kind: test.kind ?? null,
      browser_only: test.browser_only === true,
      needs_undici: test.requests.some(r => 'expected_interim_responses' in r)
    })
  }
}
console.log(JSON.stringify(list))

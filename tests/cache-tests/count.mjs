// Counts a CLI run's JSON (argv[2]) as the table does: tests that
// ran, those that passed (result `true`), and the same for the required
// tests (kind 'required' or no kind). Prints "pass ran required_pass required_ran".
import fs from 'node:fs'
import tests from './tests/index.mjs'

const results = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
let pass = 0; let ran = 0; let reqPass = 0; let reqRan = 0
for (const suite of tests) {
  for (const test of suite.tests) {
    if (!(test.id in results)) continue
    const required = test.kind === undefined || test.kind === 'required'
    ran++
    if (required) reqRan++
    if (results[test.id] === true) {
      pass++
      if (required) reqPass++
    }
  }
}
console.log(pass, ran, reqPass, reqRan)

//! A cache_dir bigger than its disk is a clear startup error naming the
//! path (not a SIGBUS later): the test re-runs itself in a private mount
//! namespace (`unshare -rm`) on a 1 MiB tmpfs and opens a 16 MiB store.

use std::path::PathBuf;
use std::process::Command;

use cuttle::store::{DirSpec, Store, StoreError, StoreOptions};

const CHILD_ENV: &str = "CUTTLE_FULL_DISK_CHILD";

#[test]
#[ignore = "runs only as the child of full_disk_is_a_clear_error"]
fn child_opens_a_store_on_the_small_disk() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let spec = DirSpec::new(PathBuf::from(dir).join("cache"), 16 << 20, 4096);
    match Store::open(&[spec], StoreOptions::default()) {
        Ok(_) => println!("RESULT: opened"),
        Err(e @ StoreError::Allocate { .. }) => println!("RESULT: allocate error: {e}"),
        Err(e) => println!("RESULT: other error: {e}"),
    }
}

#[test]
fn full_disk_is_a_clear_error() {
    let mount = std::env::temp_dir().join(format!("cuttle-full-disk-{}", std::process::id()));
    std::fs::create_dir_all(&mount).expect("mount point");
    let me = std::env::current_exe().expect("test binary path");
    let script = format!(
        "mount -t tmpfs -o size=1m cuttle-test {m} && exec {me} --exact child_opens_a_store_on_the_small_disk --ignored --nocapture",
        m = mount.display(),
        me = me.display()
    );
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .env(CHILD_ENV, &mount)
        .output()
        .expect("unshare runs (util-linux)");
    let _ = std::fs::remove_dir(&mount);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let result = stdout
        .lines()
        .find(|l| l.starts_with("RESULT: "))
        .unwrap_or_else(|| panic!("no result from the child:\n{stdout}\n{stderr}"));
    eprintln!("{result}");
    assert!(result.contains("allocate error"), "{result}");
    assert!(
        result.contains("cache/cuttle.store"),
        "names the file: {result}"
    );
    assert!(result.contains("No space left on device"), "{result}");
}

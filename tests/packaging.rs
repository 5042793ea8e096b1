//! The Debian package, built by `packaging/deb/build` (cargo-deb) and installed for real into a
//! throwaway root: an overlay of this machine's own `/` whose writes land in a temporary
//! directory, mounted in a private mount namespace (`unshare --mount`) and entered with
//! `chroot`, so dpkg, adduser and the maintainer scripts run as on a real system and the host
//! is left untouched. It checks what an operator relies on:
//!
//! - install: the binary, the unit (enabled, not started), the default config as a conffile
//!   readable by the `timed` user and nobody else, the user itself, completions, man page;
//!   the unconfigured node refuses to start with exit status 78, which the unit does not
//!   restart on;
//! - upgrade: the operator's config edits, the data directory and the node key survive;
//! - purge: what the installation created is gone (config, permissions, enablement, user and
//!   group), the data directory stays, handed to root;
//! - lintian (where installed) reports no error and no warning.
//!
//! Ignored by default: it needs root, cargo-deb (`cargo install cargo-deb --locked`) and
//! overlayfs, and takes a minute or two. Run it with
//! `cargo test --test packaging -- --ignored --nocapture`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The package revisions built: an install, then an upgrade to the second.
const FIRST: &str = "0.1.0-1";
const SECOND: &str = "0.1.0-2";

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs a host command that must succeed; returns its stdout.
fn host(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(out.status.success(), "{}", describe(what, &out));
    text(&out.stdout)
}

/// A copy-on-write view of this machine's root: `upper` collects every write.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        // Under target/, on the same filesystem as the build: overlayfs needs its upper and
        // work directories on a real filesystem, not inside another overlay.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        for d in ["upper", "work", "merged"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Root { dir }
    }

    /// Places a host file at `/root/<name>` inside the root (written to the upper layer).
    fn put(&self, from: &Path, name: &str) -> String {
        let inside = self.dir.path().join("upper/root");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::copy(from, inside.join(name)).unwrap();
        format!("/root/{name}")
    }

    /// Runs `script` with /bin/sh inside the root, in a mount namespace that ends with it.
    fn run(&self, script: &str) -> Output {
        let d = self.dir.path();
        let mount = "set -e\n\
            mount -t overlay overlay -o lowerdir=/,upperdir=\"$1/upper\",workdir=\"$1/work\" \"$1/merged\"\n\
            mount --rbind /dev \"$1/merged/dev\"\n\
            mount -t proc proc \"$1/merged/proc\"\n\
            mount -t tmpfs tmpfs \"$1/merged/run\"\n\
            exec chroot \"$1/merged\" /bin/sh -c \"$2\"";
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--fork", "--"])
            .args(["/bin/sh", "-c", mount, "sh"])
            .arg(d)
            .arg(script)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .output()
            .expect("run unshare")
    }

    /// Runs `script` inside the root; it must succeed. Returns stdout and stderr together.
    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(out.status.success(), "{}", describe(script, &out));
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }

    /// Whether `script` succeeds inside the root.
    fn holds(&self, script: &str) -> bool {
        self.run(script).status.success()
    }
}

/// Builds the package at `version` into `dir` and returns its path.
fn build(dir: &Path, version: &str) -> PathBuf {
    // One build at a time: each regenerates target/packaging.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let deb = dir.join(format!("timed_{version}.deb"));
    let root = env!("CARGO_MANIFEST_DIR");
    host(
        &format!("packaging/deb/build {version}"),
        Command::new(format!("{root}/packaging/deb/build"))
            .current_dir(root)
            .args([
                "--profile",
                "dev",
                "--strip",
                "--fast",
                "--deb-version",
                version,
            ])
            .arg("--output")
            .arg(&deb),
    );
    deb
}

#[test]
#[ignore = "needs root, cargo-deb and overlayfs; cargo test --test packaging -- --ignored"]
fn the_deb_installs_upgrades_and_purges_cleanly() {
    let build_dir = tempfile::tempdir().unwrap();
    let first = build(build_dir.path(), FIRST);
    let second = build(build_dir.path(), SECOND);

    // What the package holds, and what its scripts do about the service: enabled on
    // install, never started by the package (only restarted on upgrade if it runs).
    let contents = host(
        "dpkg-deb --contents",
        Command::new("dpkg-deb").arg("--contents").arg(&first),
    );
    for path in [
        "./usr/bin/timed",
        "./usr/lib/systemd/system/timed.service",
        "./etc/timed/timed.toml",
        "./usr/share/man/man1/timed.1.gz",
        "./usr/share/bash-completion/completions/timed",
        "./usr/share/zsh/vendor-completions/_timed",
        "./usr/share/fish/vendor_completions.d/timed.fish",
        "./usr/share/timed/prometheus/alerts.yml",
        "./usr/share/timed/grafana/timed.json",
        "./usr/share/doc/timed/copyright",
    ] {
        assert!(contents.contains(path), "{path} missing from:\n{contents}");
    }
    let control = tempfile::tempdir().unwrap();
    host(
        "dpkg-deb --control",
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(&first)
            .arg(control.path()),
    );
    let script = |name: &str| std::fs::read_to_string(control.path().join(name)).unwrap();
    let conffiles = script("conffiles");
    assert_eq!(conffiles.trim(), "/etc/timed/timed.toml");
    let postinst = script("postinst");
    assert!(
        postinst.contains("deb-systemd-helper enable 'timed.service'")
            || postinst.contains("deb-systemd-helper enable timed.service"),
        "{postinst}"
    );
    assert!(
        !postinst.contains("_dh_action=start"),
        "the package starts the service:\n{postinst}"
    );
    assert!(postinst.contains("try-restart"), "{postinst}");

    let root = Root::new();
    let first = root.put(&first, "timed-first.deb");
    let second = root.put(&second, "timed-second.deb");

    // Install.
    let said = root.ok(&format!("dpkg -i {first}"));
    assert!(
        said.contains("installed and enabled, but not started"),
        "{said}"
    );
    let user = root.ok("getent passwd timed");
    assert!(user.contains(":/var/lib/timed:"), "{user}");
    assert!(root.holds("getent group timed"));
    assert_eq!(
        root.ok("stat -c '%U:%G %a %n' /etc/timed /etc/timed/timed.toml"),
        "root:timed 750 /etc/timed\nroot:timed 640 /etc/timed/timed.toml\n"
    );
    assert!(root.ok("timed --version").starts_with("timed 0.1.0"));
    let unit = root.ok("cat /usr/lib/systemd/system/timed.service");
    assert!(
        unit.contains("\nExecStart=/usr/bin/timed --config /etc/timed/timed.toml\n"),
        "{unit}"
    );
    assert!(
        root.holds("test -L /etc/systemd/system/multi-user.target.wants/timed.service"),
        "the unit is not enabled"
    );
    if root.holds("command -v systemd-analyze") {
        let verify = root.ok("systemd-analyze verify /usr/lib/systemd/system/timed.service 2>&1");
        assert!(verify.trim().is_empty(), "systemd-analyze verify: {verify}");
    }
    assert!(root
        .ok("zcat /usr/share/man/man1/timed.1.gz")
        .contains(".TH timed 1"));
    assert!(
        root.holds("bash -c '. /usr/share/bash-completion/completions/timed && complete -p timed'")
    );
    // The service user reads the config; the shipped one is not enough to run a node (no
    // mainnet genesis yet): status 78, which the unit does not restart on.
    assert!(root.holds("runuser -u timed -- timed --config /etc/timed/timed.toml --print-config"));
    assert!(!root.holds("runuser -u nobody -- cat /etc/timed/timed.toml"));
    let refused = root.run("runuser -u timed -- timed --config /etc/timed/timed.toml");
    assert_eq!(
        refused.status.code(),
        Some(78),
        "{}",
        describe("start", &refused)
    );
    assert!(text(&refused.stderr).contains("no genesis"));
    assert!(unit.contains("\nRestartPreventExitStatus=78\n"), "{unit}");

    // The node's data, as systemd (StateDirectory=timed) and the node make it, and an
    // operator's edit of the config.
    root.ok("install -d -o timed -g timed -m 0700 /var/lib/timed && \
         runuser -u timed -- timed keygen --out /var/lib/timed/node.key >/dev/null && \
         echo '# edited by the operator' >> /etc/timed/timed.toml");
    let key = root.ok("sha256sum /var/lib/timed/node.key");
    let uid = root.ok("id -u timed");

    // Upgrade: the edit, the data and the user stay; the permissions follow the new file.
    root.ok(&format!("dpkg -i {second}"));
    assert_eq!(
        root.ok("dpkg-query -W -f '${Version}' timed"),
        SECOND.to_string()
    );
    assert!(root
        .ok("cat /etc/timed/timed.toml")
        .ends_with("# edited by the operator\n"));
    assert_eq!(root.ok("sha256sum /var/lib/timed/node.key"), key);
    assert_eq!(root.ok("id -u timed"), uid);
    assert_eq!(
        root.ok("stat -c '%U:%G %a' /etc/timed/timed.toml /var/lib/timed"),
        "root:timed 640\ntimed:timed 700\n"
    );
    assert!(root.holds("test -L /etc/systemd/system/multi-user.target.wants/timed.service"));

    // Remove keeps the config and the data; purge takes back what the install created.
    root.ok("dpkg -r timed");
    assert!(!root.holds("test -e /usr/bin/timed"));
    assert!(root.holds("test -f /etc/timed/timed.toml && getent passwd timed"));
    let said = root.ok("dpkg -P timed");
    assert!(said.contains("kept /var/lib/timed"), "{said}");
    for gone in [
        "test -e /etc/timed",
        "getent passwd timed",
        "getent group timed",
        "dpkg-statoverride --list /etc/timed",
        "dpkg-statoverride --list /etc/timed/timed.toml",
        "test -e /etc/systemd/system/multi-user.target.wants/timed.service",
        "dpkg-query -W timed",
    ] {
        assert!(!root.holds(gone), "still there after purge: {gone}");
    }
    assert_eq!(root.ok("sha256sum /var/lib/timed/node.key"), key);
    assert_eq!(
        root.ok("stat -c '%U:%G' /var/lib/timed /var/lib/timed/node.key"),
        "root:root\nroot:root\n"
    );
}

/// lintian's verdict on the package: no error and no warning (packaging/deb/lintian-overrides
/// says why the overridden ones do not apply).
#[test]
#[ignore = "needs cargo-deb and lintian; cargo test --test packaging -- --ignored"]
fn lintian_finds_no_error_in_the_deb() {
    let Ok(version) = Command::new("lintian").arg("--version").output() else {
        eprintln!("SKIPPED: lintian is not installed (Debian: apt-get install lintian)");
        return;
    };
    eprintln!("{}", text(&version.stdout).trim());
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path(), FIRST);
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--display-info"])
        .arg(&deb)
        .output()
        .unwrap();
    let report = text(&out.stdout);
    eprintln!("lintian:\n{report}{}", text(&out.stderr));
    let complaints: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(complaints.is_empty(), "lintian:\n{}", complaints.join("\n"));
}

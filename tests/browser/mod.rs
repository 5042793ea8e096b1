//! A real browser for the tests: Debian's `chromium`, headless, driven through
//! `chromedriver`'s WebDriver HTTP API (W3C WebDriver) with plain HTTP calls.
//!
//! `Browser::launch` installs the two Debian packages when they are missing and it can
//! (root with apt-get), and otherwise says why there is no browser, so a test can skip with
//! that reason. The driver process is killed when the `Browser` is dropped, even when a test
//! fails.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's names for the browser and its driver.
const BROWSER: &str = "chromium";
const DRIVER: &str = "chromedriver";
/// How long the driver may take to answer at start.
const DRIVER_START: Duration = Duration::from_secs(60);

fn on_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Installs `chromium` and `chromium-driver` with apt-get if they are missing; the reason
/// when neither is there nor can be installed.
fn ensure_installed() -> Result<(), String> {
    if on_path(BROWSER).is_some() && on_path(DRIVER).is_some() {
        return Ok(());
    }
    if on_path("apt-get").is_none() {
        return Err(format!(
            "no {BROWSER}/{DRIVER} on PATH and no apt-get to install them"
        ));
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let install = [
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
    ];
    // Without a fresh package list the install may not find them: update once, then retry.
    let installed = apt(&install) || (apt(&["update", "-qq"]) && apt(&install));
    if installed && on_path(BROWSER).is_some() && on_path(DRIVER).is_some() {
        Ok(())
    } else {
        Err(format!(
            "{BROWSER} and {DRIVER} are missing and `apt-get install chromium chromium-driver` \
             failed (not root, or no package source)"
        ))
    }
}

/// A headless chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .agent
            .delete(&format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless chromium window of 1280x1000; `Err` says why no
    /// browser can run here.
    pub fn launch() -> Result<Browser, String> {
        ensure_installed()?;
        let port = free_port();
        let driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {DRIVER}: {e}"))?;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            agent,
        };
        let started = Instant::now();
        loop {
            let ready = browser
                .agent
                .get(&format!("{}/status", browser.base))
                .call()
                .ok()
                .and_then(|r| r.into_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            if started.elapsed() > DRIVER_START {
                return Err(format!("{DRIVER} did not answer within {DRIVER_START:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let binary = on_path(BROWSER).map(|p| p.display().to_string());
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                // Root in a container: no sandbox, no /dev/shm assumptions.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            },
        }}});
        let created = browser.post("session", &caps)?;
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("{DRIVER} made no session: {created}"))?
            .to_string();
        Ok(browser)
    }

    /// A WebDriver command: its `value`, or the driver's error.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = format!("{}/{path}", self.base);
        let req = self.agent.request(method, &url);
        let answer = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        let reply: Value = match answer {
            Ok(r) => r.into_json().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(format!("WebDriver {method} {path}: HTTP {code}: {text}"));
            }
            Err(e) => return Err(format!("WebDriver {method} {path}: {e}")),
        };
        Ok(reply["value"].clone())
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.command("POST", path, Some(body))
    }

    fn session_path(&self, rest: &str) -> String {
        format!("session/{}/{rest}", self.session)
    }

    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.post(&self.session_path("url"), &json!({ "url": url }))
            .map(|_| ())
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn script(&self, script: &str) -> Result<Value, String> {
        self.post(
            &self.session_path("execute/sync"),
            &json!({ "script": script, "args": [] }),
        )
    }

    /// The text of the first element matching `selector`, if there is one.
    pub fn text(&self, selector: &str) -> Option<String> {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            json!(selector)
        );
        self.script(&script).ok()?.as_str().map(str::to_string)
    }

    /// How many elements match `selector`.
    pub fn count(&self, selector: &str) -> usize {
        let script = format!(
            "return document.querySelectorAll({}).length;",
            json!(selector)
        );
        self.script(&script)
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as usize
    }

    /// Saves a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        let data = self.command("GET", &self.session_path("screenshot"), None)?;
        let b64 = data.as_str().ok_or("no screenshot data")?;
        let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
            .map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

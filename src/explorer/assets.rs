//! The page itself: one HTML file, one script, one style sheet, compiled into the binary, so
//! the node serves the explorer with no build step, no files beside it and no CDN.

/// A static file: path under the explorer's prefix, content type, body.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        path: "/explorer.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/explorer.js"),
    },
    Asset {
        path: "/explorer.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/explorer.css"),
    },
];

/// The asset at `path` (relative to the prefix), if there is one.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads only what the binary holds: no script, style or font from elsewhere.
    #[test]
    fn the_page_references_only_embedded_files() {
        let html = find("/").unwrap().body;
        for needle in ["http://", "https://", "//cdn", "@import"] {
            for a in ASSETS {
                assert!(!a.body.contains(needle), "{} mentions {needle}", a.path);
            }
        }
        assert!(html.contains("src=\"explorer.js\""));
        assert!(html.contains("href=\"explorer.css\""));
    }
}

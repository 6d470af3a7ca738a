//! Znode path rules, as ZooKeeper's `PathUtils` applies them.

use crate::types::ErrorCode;

/// Checks a znode path exactly as ZooKeeper's `PathUtils.validatePath`.
///
/// A valid path is absolute, `/` itself, or `/`-separated non-empty names
/// without a trailing slash; no name is `.` or `..`; no NUL; none of the
/// characters U+0001..U+001F, U+007F..U+009F, U+D800..U+F8FF (Java's UTF-16
/// surrogates, so any character above U+FFFF, and the private use area) or
/// U+FFF0..U+FFFF. Every violation is [`ErrorCode::BadArguments`].
pub fn validate_path(path: &str) -> Result<(), ErrorCode> {
    let bad = Err(ErrorCode::BadArguments);
    if path.is_empty() || !path.starts_with('/') {
        return bad;
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad;
    }
    let chars: Vec<char> = path.chars().collect();
    let mut lastc = '/';
    for i in 1..chars.len() {
        let c = chars[i];
        let at_name_end = i + 1 == chars.len() || chars[i + 1] == '/';
        if c == '\0' || (c == '/' && lastc == '/') || is_forbidden_char(c) {
            return bad;
        }
        if c == '.' && lastc == '.' {
            if chars[i - 2] == '/' && at_name_end {
                return bad;
            }
        } else if c == '.' && chars[i - 1] == '/' && at_name_end {
            return bad;
        }
        lastc = c;
    }
    Ok(())
}

/// Characters ZooKeeper refuses in a path (besides NUL).
fn is_forbidden_char(c: char) -> bool {
    let u = c as u32;
    // Java sees characters above U+FFFF as surrogate pairs (U+D800..U+DFFF),
    // which fall in its forbidden U+D800..U+F8FF range.
    (0x01..=0x1f).contains(&u)
        || (0x7f..=0x9f).contains(&u)
        || (0xd800..=0xf8ff).contains(&u)
        || (0xfff0..=0xffff).contains(&u)
        || u > 0xffff
}

/// Checks the path given to a sequential create: ZooKeeper validates the
/// path with a sequence suffix appended, so a trailing `/` is allowed
/// (`/queue/` yields `/queue/0000000001`).
pub fn validate_sequential_base(path: &str) -> Result<(), ErrorCode> {
    validate_path(&format!("{path}1"))
}

/// The parent of a (valid) path: `None` for `/`, `/` for `/a`, `/a` for `/a/b`.
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        None => None,
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
    }
}

/// The last name of a path: `b` for `/a/b`, `` for `/`.
pub fn basename(path: &str) -> &str {
    match path.rfind('/') {
        None => path,
        Some(i) => &path[i + 1..],
    }
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The paths at which a node's ancestors live, nearest first, ending with `/`.
/// `/a/b/c` yields `/a/b`, `/a`, `/`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut cur = Some(path);
    std::iter::from_fn(move || {
        let p = parent(cur?);
        cur = p;
        p
    })
}

/// ZooKeeper's server-side split of a request path into its parent, as
/// `path.substring(0, path.lastIndexOf('/'))` with the empty string meaning
/// the root. `None` when the path has no `/` or holds a NUL (BadArguments).
pub fn raw_parent(path: &str) -> Option<&str> {
    if path.contains('\0') {
        return None;
    }
    match path.rfind('/') {
        None => None,
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> bool {
        validate_path(p).is_ok()
    }

    #[test]
    fn valid_paths() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/..a",
            "/a..",
            "/...",
            "/.a/b.",
            "/zookeeper",
            "/é/ü",
            "/a b",
        ] {
            assert!(ok(p), "{p:?} should be valid");
        }
    }

    #[test]
    fn invalid_paths() {
        for p in [
            "",
            "a",
            "a/b",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/.",
            "/a/..",
            "/./a",
            "/../a",
            "/a\0b",
            "/a\u{1}",
            "/a\u{1f}",
            "/a\u{7f}",
            "/a\u{9f}",
            "/a\u{e000}",
            "/a\u{f8ff}",
            "/a\u{fff0}",
            "/a\u{ffff}",
            "/a\u{1f600}",
        ] {
            assert_eq!(
                validate_path(p),
                Err(ErrorCode::BadArguments),
                "{p:?} should be invalid"
            );
        }
        // Just outside the forbidden ranges.
        assert!(ok("/a\u{a0}"));
        assert!(ok("/a\u{f900}"));
        assert!(ok("/a\u{ffef}"));
    }

    #[test]
    fn sequential_base_allows_trailing_slash() {
        assert!(validate_sequential_base("/queue/").is_ok());
        assert!(validate_sequential_base("/queue/job-").is_ok());
        assert!(validate_sequential_base("/").is_ok());
        assert!(validate_sequential_base("/a//").is_err());
        assert!(validate_sequential_base("queue").is_err());
        // "/a/." + "1" is a valid name ".1".
        assert!(validate_sequential_base("/a/.").is_ok());
    }

    #[test]
    fn parent_basename_join() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(basename("/"), "");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(
            ancestors("/a/b/c").collect::<Vec<_>>(),
            vec!["/a/b", "/a", "/"]
        );
        assert_eq!(ancestors("/").count(), 0);
        assert_eq!(raw_parent("/a/"), Some("/a"));
        assert_eq!(raw_parent("a"), None);
        assert_eq!(raw_parent("/a\0"), None);
    }
}

//! ACL checks as ZooKeeper's server applies them: `ZooKeeperServer.checkACL`,
//! `PrepRequestProcessor.fixupACL` and the built-in authentication providers
//! (`world`, `auth`, `digest`, `ip`, plus the `super` bypass).

use std::net::Ipv6Addr;

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use crate::types::{Acl, ErrorCode, Id};

/// The `digest` scheme.
pub const SCHEME_DIGEST: &str = "digest";
/// The `ip` scheme.
pub const SCHEME_IP: &str = "ip";
/// The `world` scheme (`world:anyone`).
pub const SCHEME_WORLD: &str = "world";
/// The `auth` pseudo-scheme: "whoever is authenticated on this session".
pub const SCHEME_AUTH: &str = "auth";
/// The `super` identity, added to a session that authenticated as the super user.
pub const SCHEME_SUPER: &str = "super";

/// ZooKeeper's `DigestAuthenticationProvider.generateDigest`: for
/// `user:password`, returns `user:base64(sha1("user:password"))`.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The identities a session gains from `addAuth("digest", "user:password")`,
/// as `DigestAuthenticationProvider.handleAuthentication` adds them:
/// `super:` first when the digest equals the configured super digest, then
/// `digest:user:hash`.
pub fn digest_auth_ids(auth_data: &[u8], super_digest: Option<&str>) -> Vec<Id> {
    let id = String::from_utf8_lossy(auth_data);
    let d = digest(&id);
    let mut ids = Vec::with_capacity(2);
    if super_digest == Some(d.as_str()) {
        ids.push(Id::new(SCHEME_SUPER, ""));
    }
    ids.push(Id::new(SCHEME_DIGEST, &d));
    ids
}

/// `ZooKeeperServer.checkACL`: whether a session with identities `auth`
/// holds `perm` on a node whose ACL is `acl`. An empty ACL allows
/// everything; a `super` identity bypasses every check.
pub fn check_acl(acl: &[Acl], perm: i32, auth: &[Id]) -> bool {
    if acl.is_empty() || auth.iter().any(|a| a.scheme == SCHEME_SUPER) {
        return true;
    }
    acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        if a.id.scheme == SCHEME_WORLD && a.id.id == "anyone" {
            return true;
        }
        auth.iter()
            .filter(|who| who.scheme == a.id.scheme)
            .any(|who| provider_matches(&a.id.scheme, &who.id, &a.id.id))
    })
}

/// Whether the provider for `scheme` says the authenticated `id` matches
/// the ACL expression `acl_expr`. Unknown schemes never match.
fn provider_matches(scheme: &str, id: &str, acl_expr: &str) -> bool {
    match scheme {
        SCHEME_DIGEST | "sasl" | "x509" => id == acl_expr,
        SCHEME_IP => ip_matches(id, acl_expr),
        _ => false,
    }
}

/// Whether identities of `scheme` count as "authenticated" for the `auth`
/// pseudo-scheme (`ServerAuthenticationProvider.isAuthenticated`).
fn is_authenticated_scheme(scheme: &str) -> bool {
    matches!(scheme, SCHEME_DIGEST | "sasl" | "x509")
}

/// Whether `id` is well formed for its scheme (`isValid` of its provider).
/// `world:anyone` is valid; unknown schemes are not.
pub fn is_valid_id(id: &Id) -> bool {
    match id.scheme.as_str() {
        SCHEME_WORLD => id.id == "anyone",
        // Java's `id.split(":").length == 2`: split drops trailing empties.
        SCHEME_DIGEST => {
            let parts: Vec<&str> = id.id.split(':').collect();
            let mut n = parts.len();
            while n > 0 && parts[n - 1].is_empty() {
                n -= 1;
            }
            n == 2
        }
        SCHEME_IP => ip_is_valid(&id.id),
        "sasl" | "x509" => true,
        _ => false,
    }
}

/// `PrepRequestProcessor.fixupACL`: drops duplicate entries (keeping the
/// first), expands `auth` entries into the session's authenticated
/// identities, and validates every other entry. Empty lists, invalid ids
/// and an `auth` entry on an unauthenticated session are `InvalidAcl`.
pub fn fix_acl(acl: &[Acl], auth: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    // Linear in the list (ZooKeeper compares each entry with every one kept: quadratic).
    let mut seen: std::collections::BTreeSet<&Acl> = std::collections::BTreeSet::new();
    let uniq: Vec<&Acl> = acl.iter().filter(|a| seen.insert(a)).collect();
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::with_capacity(uniq.len());
    for a in uniq {
        if a.id.scheme == SCHEME_WORLD && a.id.id == "anyone" {
            out.push(a.clone());
        } else if a.id.scheme == SCHEME_AUTH {
            let mut any = false;
            for who in auth
                .iter()
                .filter(|who| is_authenticated_scheme(&who.scheme))
            {
                any = true;
                out.push(Acl {
                    perms: a.perms,
                    id: who.clone(),
                });
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else if is_valid_id(&a.id) {
            out.push(a.clone());
        } else {
            return Err(ErrorCode::InvalidAcl);
        }
    }
    Ok(out)
}

/// An address as bytes: four for IPv4 (dotted quad, each part 0..=255),
/// sixteen for IPv6. `None` when it is neither.
fn addr_to_bytes(addr: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() == 4 {
        let mut b = Vec::with_capacity(4);
        for p in parts {
            let v: i32 = p.parse().ok()?;
            b.push(u8::try_from(v).ok()?);
        }
        return Some(b);
    }
    addr.parse::<Ipv6Addr>().ok().map(|v6| v6.octets().to_vec())
}

/// Splits `addr[/bits]` and checks the prefix length.
fn parse_ip_expr(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match expr.split_once('/') {
        None => (expr, None),
        Some((a, b)) => (a, Some(b)),
    };
    let bytes = addr_to_bytes(addr)?;
    let max = bytes.len() * 8;
    let bits = match bits {
        None => max,
        Some(b) => {
            let v: i32 = b.parse().ok()?;
            let v = usize::try_from(v).ok()?;
            if v > max {
                return None;
            }
            v
        }
    };
    Some((bytes, bits))
}

fn ip_is_valid(expr: &str) -> bool {
    parse_ip_expr(expr).is_some()
}

fn mask(bytes: &mut [u8], bits: usize) {
    for (i, b) in bytes.iter_mut().enumerate() {
        let start = i * 8;
        if start >= bits {
            *b = 0;
        } else if bits - start < 8 {
            *b &= 0xffu8 << (8 - (bits - start));
        }
    }
}

/// `IPAuthenticationProvider.matches`: the client address `id` lies in the
/// network `acl_expr` (`addr` or `addr/bits`).
fn ip_matches(id: &str, acl_expr: &str) -> bool {
    let Some((mut net, bits)) = parse_ip_expr(acl_expr) else {
        return false;
    };
    let Some(mut remote) = addr_to_bytes(id) else {
        return false;
    };
    mask(&mut net, bits);
    mask(&mut remote, bits);
    net == remote
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::perms;

    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id::new(scheme, id),
        }
    }

    #[test]
    fn digest_matches_zookeeper_vectors() {
        // The documented super digest for "super:test".
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
        // sha1("bob:secret") in standard base64.
        assert_eq!(digest("bob:secret"), "bob:fyVmFCwVbTJYrznoSu1koqYEYF0=");
        // Only the part before the first ':' is the user; the rest is hashed as is.
        assert!(digest("a:b:c").starts_with("a:"));
    }

    #[test]
    fn digest_auth_adds_super_only_for_the_super_digest() {
        let sup = "super:D/InIHSb7yEEbrWz8b9l71RjZJU=";
        let ids = digest_auth_ids(b"super:test", Some(sup));
        assert_eq!(ids, vec![Id::new("super", ""), Id::new("digest", sup)]);
        let ids = digest_auth_ids(b"bob:secret", Some(sup));
        assert_eq!(
            ids,
            vec![Id::new("digest", "bob:fyVmFCwVbTJYrznoSu1koqYEYF0=")]
        );
    }

    #[test]
    fn world_anyone_and_empty_acl() {
        assert!(check_acl(&Acl::open_unsafe(), perms::WRITE, &[]));
        assert!(check_acl(&[], perms::ADMIN, &[]));
        let read_only = vec![acl(perms::READ, "world", "anyone")];
        assert!(check_acl(&read_only, perms::READ, &[]));
        assert!(!check_acl(&read_only, perms::WRITE, &[]));
        // world:someone is not world:anyone.
        assert!(!check_acl(
            &[acl(perms::ALL, "world", "someone")],
            perms::READ,
            &[]
        ));
    }

    #[test]
    fn digest_acl_needs_exact_id() {
        let bob = digest("bob:secret");
        let a = vec![acl(perms::READ | perms::WRITE, "digest", &bob)];
        assert!(check_acl(&a, perms::WRITE, &[Id::new("digest", &bob)]));
        assert!(!check_acl(
            &a,
            perms::WRITE,
            &[Id::new("digest", &digest("bob:wrong"))]
        ));
        assert!(!check_acl(&a, perms::DELETE, &[Id::new("digest", &bob)]));
        // Same id string under another scheme does not count.
        assert!(!check_acl(&a, perms::WRITE, &[Id::new("ip", &bob)]));
        assert!(!check_acl(&a, perms::WRITE, &[]));
    }

    #[test]
    fn super_bypasses() {
        let a = vec![acl(perms::READ, "digest", &digest("bob:secret"))];
        assert!(check_acl(&a, perms::ADMIN, &[Id::new("super", "")]));
    }

    #[test]
    fn ip_acls_with_and_without_bits() {
        let a = vec![acl(perms::ALL, "ip", "10.1.0.0/16")];
        assert!(check_acl(&a, perms::READ, &[Id::new("ip", "10.1.2.3")]));
        assert!(!check_acl(&a, perms::READ, &[Id::new("ip", "10.2.2.3")]));
        let exact = vec![acl(perms::ALL, "ip", "127.0.0.1")];
        assert!(check_acl(
            &exact,
            perms::READ,
            &[Id::new("ip", "127.0.0.1")]
        ));
        assert!(!check_acl(
            &exact,
            perms::READ,
            &[Id::new("ip", "127.0.0.2")]
        ));
        let odd = vec![acl(perms::ALL, "ip", "192.168.1.128/25")];
        assert!(check_acl(
            &odd,
            perms::READ,
            &[Id::new("ip", "192.168.1.200")]
        ));
        assert!(!check_acl(
            &odd,
            perms::READ,
            &[Id::new("ip", "192.168.1.100")]
        ));
        let all = vec![acl(perms::ALL, "ip", "0.0.0.0/0")];
        assert!(check_acl(&all, perms::READ, &[Id::new("ip", "8.8.8.8")]));
        let v6 = vec![acl(perms::ALL, "ip", "fe80::/16")];
        assert!(check_acl(&v6, perms::READ, &[Id::new("ip", "fe80::1")]));
        assert!(!check_acl(&v6, perms::READ, &[Id::new("ip", "10.0.0.1")]));
    }

    #[test]
    fn fix_acl_rules() {
        let bob = Id::new("digest", &digest("bob:secret"));
        let ip = Id::new("ip", "127.0.0.1");
        // Empty -> InvalidAcl.
        assert_eq!(
            fix_acl(&[], std::slice::from_ref(&bob)),
            Err(ErrorCode::InvalidAcl)
        );
        // auth expands to authenticated ids only (ip is not "authenticated").
        let fixed = fix_acl(&[acl(perms::ALL, "auth", "")], &[ip.clone(), bob.clone()]).unwrap();
        assert_eq!(
            fixed,
            vec![Acl {
                perms: perms::ALL,
                id: bob.clone()
            }]
        );
        assert_eq!(
            fix_acl(&[acl(perms::ALL, "auth", "")], std::slice::from_ref(&ip)),
            Err(ErrorCode::InvalidAcl)
        );
        // Duplicates removed, order kept.
        let open = Acl::open_unsafe();
        let dup = vec![
            open[0].clone(),
            acl(perms::READ, "ip", "10.0.0.0/8"),
            open[0].clone(),
        ];
        assert_eq!(fix_acl(&dup, &[]).unwrap(), dup[..2].to_vec());
        // A long list with every entry twice keeps the first of each, in order.
        let many: Vec<Acl> = (0..50_000)
            .map(|i| acl(perms::READ, "ip", &format!("10.{}.{}.1", i / 250, i % 250)))
            .collect();
        let twice: Vec<Acl> = many.iter().chain(many.iter().rev()).cloned().collect();
        assert_eq!(fix_acl(&twice, &[]).unwrap(), many);
        // Format validation.
        for bad in [
            acl(perms::ALL, "digest", "bob"),
            acl(perms::ALL, "digest", "bob:"),
            acl(perms::ALL, "digest", "a:b:c"),
            acl(perms::ALL, "ip", "10.0.0"),
            acl(perms::ALL, "ip", "10.0.0.256"),
            acl(perms::ALL, "ip", "10.0.0.1/33"),
            acl(perms::ALL, "ip", "10.0.0.1/x"),
            acl(perms::ALL, "world", "nobody"),
            acl(perms::ALL, "nosuchscheme", "x"),
        ] {
            assert_eq!(
                fix_acl(std::slice::from_ref(&bad), &[]),
                Err(ErrorCode::InvalidAcl),
                "{bad:?}"
            );
        }
        for good in [
            acl(perms::ALL, "digest", "bob:hash"),
            acl(perms::ALL, "ip", "10.0.0.1/32"),
            acl(perms::ALL, "ip", "::1"),
        ] {
            assert!(
                fix_acl(std::slice::from_ref(&good), &[]).is_ok(),
                "{good:?}"
            );
        }
    }
}

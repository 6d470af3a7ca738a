use super::commands::Parsed;
use super::*;

#[test]
fn dates_print_like_java_in_utc() {
    assert_eq!(format_date(0), "Thu Jan 01 00:00:00 UTC 1970");
    // 2026-11-21 21:06:17 UTC, as zkCli printed it for a real node.
    assert_eq!(
        format_date(1_795_295_177_000),
        "Sat Nov 21 21:06:17 UTC 2026"
    );
    assert_eq!(format_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    assert_eq!(format_date(-1000), "Wed Dec 31 23:59:59 UTC 1969");
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(20_414), (2025, 11, 22));
}

#[test]
fn stat_layout_matches_zkcli() {
    let s = Stat {
        czxid: 0x54,
        mzxid: 0x54,
        ctime: 0,
        mtime: 0,
        version: 1,
        cversion: 2,
        aversion: 3,
        ephemeral_owner: 0x100000a92220009,
        data_length: 4,
        num_children: 5,
        pzxid: 0x4e,
    };
    assert_eq!(
        format_stat(&s),
        "cZxid = 0x54\nctime = Thu Jan 01 00:00:00 UTC 1970\nmZxid = 0x54\n\
         mtime = Thu Jan 01 00:00:00 UTC 1970\npZxid = 0x4e\ncversion = 2\ndataVersion = 1\n\
         aclVersion = 3\nephemeralOwner = 0x100000a92220009\ndataLength = 4\nnumChildren = 5"
    );
}

#[test]
fn acls_parse_and_print_like_zkcli() {
    let acl = parse_acl("world:anyone:cdrwa,digest:bob:x/y=:r,auth::CD").unwrap();
    assert_eq!(
        acl[0],
        Acl {
            perms: perms::ALL,
            id: Id::anyone()
        }
    );
    assert_eq!(
        acl[1],
        Acl {
            perms: perms::READ,
            id: Id::new("digest", "bob:x/y=")
        }
    );
    assert_eq!(
        acl[2],
        Acl {
            perms: perms::CREATE | perms::DELETE,
            id: Id::new("auth", "")
        }
    );
    assert_eq!(perm_string(perms::ALL), "cdrwa");
    assert_eq!(perm_string(perms::READ | perms::ADMIN), "ra");
    assert!(parse_acl("world:anyone").is_err());
    assert_eq!(
        parse_acl("world:anyone:rx"),
        Err("Unknown perm type: x".into())
    );
}

#[test]
fn tokenizer_handles_quotes() {
    assert_eq!(
        tokenize("  create /a  'hello world' \"\"\n").unwrap(),
        ["create", "/a", "hello world", ""]
    );
    assert!(tokenize("set /a 'oops").is_err());
    assert!(tokenize("   ").unwrap().is_empty());
}

#[test]
fn options_split_from_arguments() {
    let words: Vec<String> = ["-s", "/a", "-v", "3", "data"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let p = Parsed::parse(&words, "s", "v").unwrap();
    assert!(p.has('s'));
    assert_eq!(p.version(), Ok(3));
    assert_eq!(p.args, ["/a", "data"]);
    assert!(
        Parsed::parse(&words[..3], "s", "x").is_err(),
        "-v is not an option here"
    );
    assert!(
        Parsed::parse(&["-v".to_string()], "", "v").is_err(),
        "-v needs a value"
    );
}

#[test]
fn events_print_like_zkcli() {
    let ev = WatchedEvent {
        event_type: EventType::NodeDataChanged,
        state: 3,
        path: "/jz2".into(),
    };
    assert_eq!(
        format_event(&ev),
        "WatchedEvent state:SyncConnected type:NodeDataChanged path:/jz2"
    );
    let ev = WatchedEvent {
        event_type: EventType::None,
        state: keeper_state::CLOSED,
        path: String::new(),
    };
    assert_eq!(
        format_event(&ev),
        "WatchedEvent state:Closed type:None path:null"
    );
}

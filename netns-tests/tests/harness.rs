//! The harness cleans up after itself.

use std::net::IpAddr;

use netns_tests::netlink::{ns_exists, tcp_reachable};
use netns_tests::{require_root, Lab};

#[test]
fn namespaces_are_removed_on_drop_and_on_panic() {
    require_root!("namespaces_are_removed_on_drop_and_on_panic");
    let lab = Lab::new("h-drop");
    let (s, c) = (lab.server_ns.clone(), lab.client_ns.clone());
    assert!(ns_exists(&s) && ns_exists(&c));
    // A process in a namespace does not keep it alive after drop.
    let _sleeper = lab.spawn(&s, "sleep", &["30"]);
    drop(lab);
    assert!(!ns_exists(&s) && !ns_exists(&c), "namespaces left behind");

    let names = std::sync::Mutex::new(None);
    let r = std::panic::catch_unwind(|| {
        let mut lab = Lab::new("h-panic");
        let extra = lab.add_client();
        *names.lock().unwrap() = Some((
            lab.server_ns.clone(),
            lab.client_ns.clone(),
            extra.ns,
            lab.dir().to_owned(),
        ));
        panic!("deliberate");
    });
    assert!(r.is_err());
    let (s, c, e, dir) = names.into_inner().unwrap().unwrap();
    // A failed test keeps its files for inspection; this failure was on purpose.
    assert!(dir.exists(), "the files of a failed test were not kept");
    std::fs::remove_dir_all(&dir).unwrap();
    for ns in [s, c, e] {
        assert!(!ns_exists(&ns), "namespace {ns} left behind after a panic");
    }
}

#[test]
fn link_down_up_and_recreate_keep_connectivity() {
    require_root!("link_down_up_and_recreate_keep_connectivity");
    let lab = Lab::new("h-link");
    let reach = |v6: bool| {
        let dst: IpAddr = if v6 {
            lab.server_v6().into()
        } else {
            lab.server_v4().into()
        };
        tcp_reachable(&lab.client_ns, dst)
    };
    assert!(reach(false) && reach(true), "no connectivity at start");
    lab.set_server_link(false);
    assert!(!reach(false), "the server answers through a down link");
    lab.set_server_link(true);
    let ok = netns_tests::wait::poll_until(std::time::Duration::from_secs(5), || {
        (reach(false) && reach(true)).then_some(())
    });
    assert!(ok.is_some(), "no connectivity after link up");
    lab.delete_server_link();
    assert!(!reach(false), "the server answers without a link");
    lab.create_server_link();
    assert!(
        reach(false) && reach(true),
        "no connectivity after re-creating the link"
    );
}

//! Cross compatibility: our `knock` against the classic daemon, and the
//! classic `knock` against our `knockd`.

use netns_tests::cases::{
    each, opens, send, send_opens, serve, Knock, CLASSIC, MIXED_V6, OURS, TCP, UDP,
};
use netns_tests::scenario::QUIET;
use netns_tests::{expect_no_file, require_root};

/// Our client sends SYNs, and so does the classic one: the door asks for them.
const TCP_SYN: Knock = TCP.with_tcp_flags("syn");

/// Each row: the client of one implementation opens the one-door daemon of
/// the other (TCP, UDP, mixed over IPv6).
#[test]
fn each_client_opens_the_other_implementations_daemon() {
    require_root!("each_client_opens_the_other_implementations_daemon");
    // (client, daemon)
    let ours = (OURS, CLASSIC);
    let classic = (CLASSIC, OURS);
    each(
        &[
            ("x-ours-tcp", (ours, TCP_SYN)),
            ("x-ours-udp", (ours, UDP)),
            ("x-ours-mixed6", (ours, MIXED_V6)),
            ("x-classic-tcp", (classic, TCP_SYN)),
            ("x-classic-udp", (classic, UDP)),
            ("x-classic-mixed6", (classic, MIXED_V6)),
        ],
        |name, ((knocker, listener), knock)| {
            opens(name, *knocker, *listener, knock);
        },
    );
}

/// `knock --flags fin HOST 7000 8000 9000` on a door asking for FIN
/// without ACK.
const FIN: Knock = Knock {
    extra: &["--flags", "fin"],
    ..TCP.with_tcp_flags("fin,!ack")
};

#[test]
fn our_knock_fin_opens_classic_fin_not_ack_door() {
    require_root!("our_knock_fin_opens_classic_fin_not_ack_door");
    let (lab, d) = serve("x-ours-fin", CLASSIC, &FIN);
    // Plain SYN hits do not satisfy fin,!ack.
    send(&lab, OURS, &Knock { extra: &[], ..FIN });
    expect_no_file(&lab.path("opened"), QUIET, &d);
    send_opens(&lab, &d, OURS, &FIN);
}

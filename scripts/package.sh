#!/usr/bin/env bash
# Build the Debian package of the knock suite (knockd, knock, knock-gen,
# manual pages, shell completions, systemd units, /etc/knockd.conf).
#
#   scripts/package.sh           build target/debian/knock-suite_VERSION_ARCH.deb
#   scripts/package.sh --check   build it, then check that it holds every part
#
# Needs: Rust, libpcap-dev, dpkg-dev (dpkg-shlibdeps for the dependencies);
# installs cargo-deb with `cargo install cargo-deb --locked` when missing.
# The package metadata is in knockd/Cargo.toml ([package.metadata.deb]).
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
    "") ;;
    --check) check=true ;;
    -h|--help)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        exit 0 ;;
    *)
        echo "package.sh: unknown argument \"$1\" (use --check or nothing)" >&2
        exit 2 ;;
esac

if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "== cargo install cargo-deb --locked"
    cargo install cargo-deb --locked
fi
if ! command -v dpkg-shlibdeps >/dev/null 2>&1; then
    echo "package.sh: dpkg-shlibdeps is missing (apt-get install dpkg-dev); the package's library dependencies cannot be computed" >&2
    exit 1
fi

echo "== manual pages and completions (cargo run -p xtask -- dist packaging/dist)"
rm -rf packaging/dist
cargo run --quiet -p xtask -- dist packaging/dist >/dev/null

echo "== cargo deb -p knockd"
out=$(cargo deb -p knockd --output target/debian/)
deb=$(printf '%s\n' "$out" | tail -n 1)
if [ ! -f "$deb" ]; then
    echo "package.sh: cargo deb did not report a package file (got \"$deb\")" >&2
    exit 1
fi
echo "built $deb"

$check || exit 0

echo "== checking $deb"
fail=0
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
conffiles=$(dpkg-deb -I "$deb" conffiles 2>/dev/null || true)
depends=$(dpkg-deb -f "$deb" Depends)

expect_file() {
    if printf '%s\n' "$contents" | grep -qxF "$1"; then
        echo "ok      $1"
    else
        echo "MISSING $1" >&2
        fail=1
    fi
}

for f in /usr/sbin/knockd /usr/bin/knock /usr/bin/knock-gen \
    /usr/share/man/man8/knockd.8.gz /usr/share/man/man1/knock.1.gz \
    /usr/share/man/man1/knock-gen.1.gz /usr/share/man/man5/knockd.conf.5.gz \
    /usr/share/bash-completion/completions/knockd \
    /usr/share/bash-completion/completions/knock \
    /usr/share/bash-completion/completions/knock-gen \
    /usr/share/zsh/vendor-completions/_knockd \
    /usr/share/zsh/vendor-completions/_knock \
    /usr/share/zsh/vendor-completions/_knock-gen \
    /usr/share/fish/vendor_completions.d/knockd.fish \
    /usr/share/fish/vendor_completions.d/knock.fish \
    /usr/share/fish/vendor_completions.d/knock-gen.fish \
    /lib/systemd/system/knockd.service /lib/systemd/system/knockd@.service \
    /etc/knockd.conf /etc/default/knockd \
    /usr/share/doc/knock-suite/copyright /usr/share/doc/knock-suite/README.md
do
    expect_file "$f"
done
for f in examples/*.conf; do
    expect_file "/usr/share/doc/knock-suite/examples/$(basename "$f")"
done

for c in /etc/knockd.conf /etc/default/knockd; do
    if printf '%s\n' "$conffiles" | grep -qxF "$c"; then
        echo "ok      conffile $c"
    else
        echo "MISSING conffile $c (conffiles: $conffiles)" >&2
        fail=1
    fi
done
if printf '%s\n' "$depends" | tr ',' '\n' | grep -qE '^ *libpcap0\.8( |$)'; then
    echo "ok      Depends: $depends"
else
    echo "MISSING libpcap0.8 in Depends: $depends" >&2
    fail=1
fi
for s in postinst prerm postrm; do
    if dpkg-deb -I "$deb" "$s" >/dev/null 2>&1; then
        echo "ok      maintainer script $s"
    else
        echo "MISSING maintainer script $s" >&2
        fail=1
    fi
done

# Unpack and run what was packaged: the binaries start, the packaged
# configuration passes the check, the manual pages render, the units verify.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
for b in usr/sbin/knockd usr/bin/knock usr/bin/knock-gen; do
    if "$root/$b" --version >/dev/null; then
        echo "ok      $b --version"
    else
        echo "FAILED  $b --version" >&2
        fail=1
    fi
done
if "$root/usr/sbin/knockd" -i lo --check -c "$root/etc/knockd.conf" >/dev/null; then
    echo "ok      knockd --check -c /etc/knockd.conf"
else
    echo "FAILED  knockd --check -c /etc/knockd.conf" >&2
    fail=1
fi
if command -v groff >/dev/null 2>&1; then
    for m in "$root"/usr/share/man/man*/*.gz; do
        if zcat "$m" | groff -man -ww -z 2>&1 | grep -q .; then
            echo "FAILED  groff warnings in ${m#"$root"}" >&2
            zcat "$m" | groff -man -ww -z >&2 || true
            fail=1
        else
            echo "ok      ${m#"$root"} renders"
        fi
    done
else
    echo "note    groff not installed: manual pages not rendered"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
    # Verify the units as installed, against the packaged binary.
    units=$(mktemp -d)
    trap 'rm -rf "$root" "$units"' EXIT
    for u in knockd.service knockd@.service; do
        sed "s|/usr/sbin/knockd|$root/usr/sbin/knockd|g" "$root/lib/systemd/system/$u" >"$units/$u"
    done
    cp "$units/knockd@.service" "$units/knockd@lo.service"
    if systemd-analyze verify --man=no "$units/knockd.service" "$units/knockd@lo.service"; then
        echo "ok      systemd-analyze verify knockd.service knockd@lo.service"
    else
        echo "FAILED  systemd-analyze verify" >&2
        fail=1
    fi
else
    echo "note    systemd-analyze not installed: units not verified"
fi

echo
dpkg-deb -I "$deb" | sed -n '/Package:/,$p'
if [ "$fail" -ne 0 ]; then
    echo "package.sh: $deb is incomplete (see above)" >&2
    exit 1
fi
echo "package.sh: $deb holds every part"

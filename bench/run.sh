#!/usr/bin/env bash
# Side-by-side benchmark of our knockd and the classic one (/usr/sbin/knockd).
#
# Creates two throw-away network namespaces joined by a veth pair, runs both
# daemons at once on the same server interface with equivalent doors on
# different ports, and measures:
#   1. knock -> start command latency (median, p99)
#   2. knocks detected while a bounded flood of spoofed SYNs hits both doors
#   3. CPU seconds, peak RSS and log-file growth of each daemon during that
#      flood, for several numbers of distinct spoofed sources
#   4. idle cost: CPU, wake-ups (voluntary context switches of all threads)
#      and RSS over a silent period
#   5. matcher throughput in isolation (cargo bench -p knockd --bench matcher)
# then prints a table and writes it as Markdown.
#
# Every packet stays inside the two namespaces; the flood is bounded in
# packets and seconds; namespaces, daemons and files go away on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

usage() {
  cat <<'EOF'
usage: bench/run.sh [--quick] [--knocks N] [--flood-seconds S] [--idle-seconds S]
                    [--sources "N N ..."] [--interval-ms MS] [--no-cargo-bench]
                    [--classic PATH] [--out FILE] [--perf DIR]

  --quick            short run: 20 knocks, 3 s floods (100k and 1M sources),
                     10 s idle, criterion in quick mode
  --knocks N         latency knocks per daemon (default 50)
  --flood-seconds S  length of each flood (default 10)
  --idle-seconds S   length of the idle measurement (default 60)
  --sources LIST     distinct spoofed sources per flood, one flood (with freshly
                     started daemons) per entry (default "100000 300000 1000000")
  --interval-ms MS   how often the real client knocks during a flood (default 300)
  --no-cargo-bench   skip the matcher throughput benchmark
  --classic PATH     the classic daemon (default /usr/sbin/knockd)
  --out FILE         where to write the Markdown table
                     (default target/bench/latest.md)
  --perf DIR         record both daemons with `perf record -g` during the
                     first flood; reports go to DIR/{ours,classic}.perf.txt
  --rotating MODE    also give our daemon a rotating door (Sequence_Secret,
                     defaults) that the flood does not knock: MODE "plain",
                     or "bound" (Sequence_Bind_Source = yes: every flooded
                     port lies in its range, so each new source is derived)

Needs root (network namespaces, packet capture). Example:
  sudo bench/run.sh            # the documented run, about 3 minutes
  sudo bench/run.sh --quick    # about 1 minute
EOF
}

knocks=50 flood_s=10 idle_s=60 sources="100000 300000 1000000" interval_ms=300
cargo_bench=1 quick=0 classic=/usr/sbin/knockd out=target/bench/latest.md perf_dir= rotating=
quick_settings() { quick=1 knocks=20 flood_s=3 idle_s=10 sources="100000 1000000"; }
parse_options bench --quick=@quick_settings --knocks=knocks --flood-seconds=flood_s \
  --idle-seconds=idle_s --sources=sources --interval-ms=interval_ms \
  --no-cargo-bench=cargo_bench:0 --classic=classic --out=out --perf=perf_dir \
  --rotating=rotating -- "$@"
[[ -z $rotating || $rotating == plain || $rotating == bound ]] ||
  { echo "bench: --rotating takes plain or bound, got \"$rotating\"" >&2; exit 2; }
check_int bench --knocks "$knocks" 1
check_int bench --flood-seconds "$flood_s" 1
check_int bench --idle-seconds "$idle_s" 1
check_int bench --interval-ms "$interval_ms" 1
for s in $sources; do check_int bench "a --sources entry" "$s" 1 1048576; done
require_root bench
[[ -x $classic ]] || { echo "bench: classic knockd not found at $classic (apt-get install knockd, or --classic PATH)" >&2; exit 1; }

echo "== building (release)"
cargo build --release --quiet -p knockd -p knock-flood -p knock-gen
bin=$(release_bin_dir)

# ---------------------------------------------------------------- the lab
srv=kbench-srv-$$ cli=kbench-cli-$$ sif=kbs$$ cif=kbc$$
srv_ip=10.250.0.1 cli_ip=10.250.0.2
# Spoofed sources: private addresses that exist only in these namespaces.
# The server has no route back to them, so its kernel's RSTs go nowhere.
src_net=10.0.0.0/12
ours_pid= classic_pid= flood_pid= perf_pids=()
stop_processes() { stop_pids "${perf_pids[@]}" "$flood_pid" "$ours_pid" "$classic_pid"; }
lab_open bench
# The real knocks come from 32 addresses in turn, each reused only after
# 32 knocks (3.2 s or more), past the doors' Seq_Timeout of 1 s: a re-knock
# from one address within Seq_Timeout of its opening is a straggler, which
# our daemon ignores by design, so one address would not measure detection.
probe_srcs=()
for i in $(seq 100 131); do
  ip -n "$cli" addr add "10.250.0.$i/24" dev "$cif"
  probe_srcs+=(--src "10.250.0.$i")
done
veth_pair_up
# Let IPv6 duplicate address detection of the link-local addresses finish:
# its end is an address change (an rtnetlink notification that wakes our
# daemon) and would otherwise fall into the idle measurement.
for _ in $(seq 100); do
  [[ -z $(ip -n "$srv" -6 addr show dev "$sif" tentative) && -z $(ip -n "$cli" -6 addr show dev "$cif" tentative) ]] && break
  sleep 0.1
done
srv_mac=$(ip netns exec "$srv" cat "/sys/class/net/$sif/address")

# Equivalent doors on different ports; the start command records the time.
write_conf() { # NAME FIRST_PORT
  local name=$1 p=$2
  cat > "$work/$name.conf" <<CONF
[options]
    LogFile = $work/$name.log

[bench]
    Sequence      = $p,$((p + 1000)),$((p + 2000))
    Seq_Timeout   = 1
    TCPFlags      = syn
    Start_Command = exec $bin/knock-stamp $work/$name.stamps
CONF
}
write_conf ours 7000
write_conf classic 7100
if [[ -n $rotating ]]; then
  "$bin/knock-gen" --secret -o "$work/rot.key" 2>/dev/null
  cat >> "$work/ours.conf" <<CONF

[rot]
    Sequence_Secret      = $work/rot.key
    Sequence_State       = $work/rot.window
    Sequence_Bind_Source = $([[ $rotating == bound ]] && echo yes || echo no)
    Start_Command        = true
CONF
fi
ours_door="ours:7000,8000,9000:$work/ours.stamps"
classic_door="classic:7100,8100,9100:$work/classic.stamps"

start_daemons() {
  rm -f "$work"/*.log "$work"/*.pid
  ip netns exec "$srv" "$bin/knockd" -i "$sif" -c "$work/ours.conf" -p "$work/ours.pid" >"$work/ours.out" 2>&1 &
  ours_pid=$!
  ip netns exec "$srv" "$classic" -i "$sif" -c "$work/classic.conf" -p "$work/classic.pid" >"$work/classic.out" 2>&1 &
  classic_pid=$!
  for _ in $(seq 100); do
    grep -qs "listening on" "$work/ours.log" && grep -qs "listening on" "$work/classic.log" && break
    sleep 0.1
  done
  for n in ours classic; do
    if ! grep -qs "listening on" "$work/$n.log"; then
      echo "bench: the $n daemon did not start; its output and log:" >&2
      cat "$work/$n.out" "$work/$n.log" >&2 2>/dev/null || true
      exit 1
    fi
  done
  sleep 0.5
}
stop_daemons() {
  stop_pid "$ours_pid"; ours_pid=
  stop_pid "$classic_pid"; classic_pid=
}

clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # PID -> utime+stime in ticks
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
status_field() { # PID FIELD -> value (kB for memory, count for switches)
  awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}
wakeups() { # PID -> voluntary context switches of all threads (each is a sleep that ended)
  local t sum=0
  for t in /proc/"$1"/task/*; do
    sum=$((sum + $(awk '/^voluntary_ctxt_switches:/ {s += $2} END {print s + 0}' "$t/status")))
  done
  echo "$sum"
}
fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }
in_cli() { ip netns exec "$cli" "$@"; }
probe() { # MODE ARGS...
  local mode=$1; shift
  in_cli "$bin/knock-probe" -i "$cif" --dst-mac "$srv_mac" "${probe_srcs[@]}" --dst "$srv_ip" \
    --door "$ours_door" --door "$classic_door" --mode "$mode" "$@"
}
field() { # LINE KEY -> value of KEY=value
  tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}
door_line() { # OUTPUT DOOR
  grep "^door=$2 " <<<"$1"
}

declare -A R # results
start_daemons
echo "== daemons running: ours (pid $ours_pid), classic (pid $classic_pid) on $sif in $srv"

# ------------------------------------------------------------ 4. idle cost
echo "== idle: ${idle_s} s of silence"
for n in ours classic; do
  pid_var=${n}_pid
  R[idle_t0_$n]=$(cpu_ticks "${!pid_var}")
  R[idle_w0_$n]=$(wakeups "${!pid_var}")
done
sleep "$idle_s"
for n in ours classic; do
  pid_var=${n}_pid
  R[idle_cpu_$n]=$(awk -v a="${R[idle_t0_$n]}" -v b="$(cpu_ticks "${!pid_var}")" -v t="$clk_tck" 'BEGIN {printf "%.2f", (b - a) / t}')
  R[idle_wake_$n]=$(( $(wakeups "${!pid_var}") - R[idle_w0_$n] ))
  R[idle_rss_$n]=$(status_field "${!pid_var}" VmRSS)
done

# ---------------------------------------------------------- 1. latency
echo "== latency: $knocks knocks per daemon, one at a time"
lat=$(probe latency --knocks "$knocks" --interval-ms 100 --timeout-ms 3000)
echo "$lat"
for n in ours classic; do
  l=$(door_line "$lat" "$n")
  for k in sent detected median_ms p99_ms max_ms; do R[lat_${k}_$n]=$(field "$l" "$k"); done
done
stop_daemons

# ------------------------------------------------- 2 + 3. spoofed flood
# Upper bound on packets: far above what the veth takes in the time.
flood_count=$((flood_s * 5000000))
for s in $sources; do
  echo "== flood: ${flood_s} s of SYNs from $s spoofed sources to ports 7000 and 7100, real knocks every ${interval_ms} ms"
  rm -f "$work"/*.stamps
  start_daemons
  for n in ours classic; do
    pid_var=${n}_pid
    R[f_t0_$n]=$(cpu_ticks "${!pid_var}")
    R[f_log0_$n]=$(fsize "$work/$n.log")
  done
  in_cli "$bin/knock-flood" -i "$cif" --dst-mac "$srv_mac" --dst "$srv_ip" --port 7000 --port 7100 \
    --sources "$s" --src-net "$src_net" --count "$flood_count" --seconds "$flood_s" >"$work/flood.out" &
  flood_pid=$!
  if [[ -n $perf_dir && ${#perf_pids[@]} -eq 0 ]]; then
    mkdir -p "$perf_dir"
    for n in ours classic; do
      pid_var=${n}_pid
      perf record -q -g -p "${!pid_var}" -o "$work/$n.perf.data" 2>"$work/$n.perf.err" &
      perf_pids+=($!)
    done
  fi
  sleep 0.2
  st=$(probe stream --seconds "$(awk -v f="$flood_s" 'BEGIN {print f - 0.5}')" --interval-ms "$interval_ms" \
    --knocks 100000 --timeout-ms 5000)
  wait "$flood_pid" || { echo "bench: knock-flood failed" >&2; exit 1; }
  flood_pid=
  if [[ -n $perf_dir && -e $work/ours.perf.data ]]; then
    for p in "${perf_pids[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    for n in ours classic; do
      perf report -q --stdio --no-children -i "$work/$n.perf.data" --percent-limit 0.5 -g none \
        >"$perf_dir/$n.perf.txt" 2>/dev/null || true
      perf report -q --stdio --children -i "$work/$n.perf.data" --percent-limit 2 -g caller,0.5,callee \
        >"$perf_dir/$n.perf-callers.txt" 2>/dev/null || true
      rm -f "$work/$n.perf.data"
    done
    echo "== perf reports in $perf_dir"
    perf_pids=(-)
  fi
  fl=$(cat "$work/flood.out")
  echo "$fl"
  echo "$st"
  sleep 1
  R[f_pps_$s]=$(field "$fl" pps)
  R[f_sent_$s]=$(field "$fl" sent)
  for n in ours classic; do
    pid_var=${n}_pid
    l=$(door_line "$st" "$n")
    R[f_knocks_${n}_$s]=$(field "$l" sent)
    R[f_detected_${n}_$s]=$(field "$l" detected)
    R[f_cpu_${n}_$s]=$(awk -v a="${R[f_t0_$n]}" -v b="$(cpu_ticks "${!pid_var}")" -v t="$clk_tck" 'BEGIN {printf "%.2f", (b - a) / t}')
    R[f_hwm_${n}_$s]=$(status_field "${!pid_var}" VmHWM)
    kill -0 "${!pid_var}" 2>/dev/null || { echo "bench: the $n daemon died during the flood" >&2; exit 1; }
  done
  # Log growth includes what the daemons write when they stop (our
  # rate limiter's last summary lines).
  stop_daemons
  for n in ours classic; do
    R[f_log_${n}_$s]=$(( $(fsize "$work/$n.log") - R[f_log0_$n] ))
    # Per started minute: the limit is per 60 s window, so a 10 s flood
    # writes what a whole minute may (scaling it up to 60 s would count the
    # burst six times); a flood longer than a minute is averaged.
    R[f_logmin_${n}_$s]=$(awk -v b="${R[f_log_${n}_$s]}" -v t="$flood_s" 'BEGIN {m = int((t + 59) / 60); printf "%.1f", b / 1024 / m}')
  done
  # Ours logs the packets its capture ring had no room for (the last count
  # at shut-down); the classic daemon says nothing of them.
  R[f_kdrop_ours_$s]=$(tail -c +$((R[f_log0_ours] + 1)) "$work/ours.log" | awk '
    / packets dropped by the kernel / { for (i = 2; i <= NF; i++) if ($i == "packets" && $(i + 1) == "dropped") n += $(i - 1) }
    END { print n + 0 }')
  if [[ $s == "${sources%% *}" ]]; then
    tail -n 4 "$work/ours.log" | sed 's/^/   ours.log: /'
  fi
done

# ------------------------------------------------ 5. matcher throughput
bench_line="not run (--no-cargo-bench)"
if [[ $cargo_bench -eq 1 ]]; then
  echo "== cargo bench -p knockd --bench matcher"
  extra=()
  [[ $quick -eq 1 ]] && extra=(--warm-up-time 1 --measurement-time 2)
  cb=$(cargo bench --quiet -p knockd --bench matcher -- "${extra[@]}" 2>&1 | tee "$work/criterion.out")
  # Lines like "decode+match/cap/65536 ... thrpt:  [a Melem/s b Melem/s c Melem/s]"
  bench_line=$(awk '
    /^decode/ { name = $1 }
    /thrpt:/ { gsub(/\[|\]/, ""); for (i = 1; i <= NF; i++) if ($i == "thrpt:") { v = $(i + 3); u = $(i + 4) }
               if (name != "") { printf "%s%s: %s %s", sep, name, v, u; sep = "; "; name = "" } }
  ' "$work/criterion.out")
fi

# ------------------------------------------------------------- the table
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
ratio() { # OURS CLASSIC -> ours/classic; no ratio of a figure to 0
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-") print "-";
    else if (b + 0 == 0) print (a + 0 == 0 ? "both 0" : "n/a (classic 0)"); else printf "%.3g", a / b }'
}
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && a + 0 <= b + 0) }'; }
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 |"); }

row "Knock→command latency, median (ms), $knocks knocks" "${R[lat_median_ms_ours]}" "${R[lat_median_ms_classic]}" \
  "$(ratio "${R[lat_median_ms_ours]}" "${R[lat_median_ms_classic]}")" \
  "≤ 2 ms: $(le "${R[lat_median_ms_ours]}" 2 && echo met || echo MISSED)"
row "Knock→command latency, p99 (ms)" "${R[lat_p99_ms_ours]}" "${R[lat_p99_ms_classic]}" \
  "$(ratio "${R[lat_p99_ms_ours]}" "${R[lat_p99_ms_classic]}")" ""
row "Latency knocks detected" "${R[lat_detected_ours]}/${R[lat_sent_ours]}" "${R[lat_detected_classic]}/${R[lat_sent_classic]}" "" ""
for s in $sources; do
  pps=${R[f_pps_$s]}
  row "Flood $s sources, ${flood_s} s at $(awk -v p="$pps" 'BEGIN {printf "%.0f", p / 1000}')k pps ($(awk -v p="${R[f_sent_$s]}" 'BEGIN {printf "%.2f", p / 1e6}')M SYNs): knocks detected" \
    "${R[f_detected_ours_$s]}/${R[f_knocks_ours_$s]}" "${R[f_detected_classic_$s]}/${R[f_knocks_classic_$s]}" \
    "$(ratio "${R[f_detected_ours_$s]}" "${R[f_detected_classic_$s]}")" \
    "all: $([[ ${R[f_detected_ours_$s]} == "${R[f_knocks_ours_$s]}" ]] && echo met || echo MISSED)"
  row "Flood $s sources: packets the kernel dropped (capture ring full; ours from its log)" "${R[f_kdrop_ours_$s]}" "-" "" ""
  row "Flood $s sources: CPU seconds" "${R[f_cpu_ours_$s]}" "${R[f_cpu_classic_$s]}" \
    "$(ratio "${R[f_cpu_ours_$s]}" "${R[f_cpu_classic_$s]}")" \
    "≤ 0.35 × classic: $(le "$(ratio "${R[f_cpu_ours_$s]}" "${R[f_cpu_classic_$s]}")" 0.35 && echo met || echo MISSED)"
  row "Flood $s sources: peak RSS (MiB)" "$(mib "${R[f_hwm_ours_$s]}")" "$(mib "${R[f_hwm_classic_$s]}")" \
    "$(ratio "${R[f_hwm_ours_$s]}" "${R[f_hwm_classic_$s]}")" \
    "≤ 16 MiB: $(le "$(mib "${R[f_hwm_ours_$s]}")" 16 && echo met || echo MISSED)"
  row "Flood $s sources: log growth (KiB per started minute of flood)" "${R[f_logmin_ours_$s]}" "${R[f_logmin_classic_$s]}" \
    "$(ratio "${R[f_logmin_ours_$s]}" "${R[f_logmin_classic_$s]}")" \
    "≤ 100 KiB/min: $(le "${R[f_logmin_ours_$s]}" 100 && echo met || echo MISSED)"
done
row "Idle ${idle_s} s: CPU seconds" "${R[idle_cpu_ours]}" "${R[idle_cpu_classic]}" \
  "$(ratio "${R[idle_cpu_ours]}" "${R[idle_cpu_classic]}")" \
  "≈ 0: $(le "${R[idle_cpu_ours]}" 0.01 && echo met || echo MISSED)"
row "Idle ${idle_s} s: wake-ups (voluntary context switches, all threads)" "${R[idle_wake_ours]}" "${R[idle_wake_classic]}" \
  "$(ratio "${R[idle_wake_ours]}" "${R[idle_wake_classic]}")" \
  "0: $(le "${R[idle_wake_ours]}" 0 && echo met || echo MISSED)"
row "RSS at rest (MiB)" "$(mib "${R[idle_rss_ours]}")" "$(mib "${R[idle_rss_classic]}")" \
  "$(ratio "${R[idle_rss_ours]}" "${R[idle_rss_classic]}")" \
  "≤ 6 MiB: $(le "$(mib "${R[idle_rss_ours]}")" 6 && echo met || echo MISSED)"

cpu_model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
ours_ver=$("$bin/knockd" --version 2>&1 | head -1 || true)
classic_ver=$(dpkg-query -W -f '${Package} ${Version}' knockd 2>/dev/null || "$classic" -V 2>&1 | head -1)
mkdir -p "$(dirname "$out")"
{
  echo "## Results ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Machine: $(nproc) CPUs ($cpu_model), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r)."
  echo "Daemons: ours \`$ours_ver\` (release build) and classic \`$classic_ver\`, both on the same veth at once."
  echo "Command: \`bench/run.sh$([[ $quick -eq 1 ]] && echo " --quick")\` (knocks $knocks, floods ${flood_s} s, idle ${idle_s} s, real knocks every ${interval_ms} ms during floods)."
  echo
  echo "| Figure | ours | classic | ours/classic | target |"
  echo "|---|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Matcher throughput (\`cargo bench -p knockd --bench matcher\`, decode + match, mixed workload): $bench_line."
} > "$out"
echo
cat "$out"
echo
echo "bench: table written to $out"

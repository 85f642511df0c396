#!/usr/bin/env bash
# peer-before-after.sh BEFORE_CHECKOUT - one interleaved ../shared/bench round on a local
# directory, MooseFS, berth from BEFORE_CHECKOUT (built: dist/, node_modules/) and berth
# from this checkout, so all four see the same machine load. Root; peers installed
# (../shared/bench/peers/install-peers.sh) and /tmp/bench-src.tar made. Knobs go to
# fsbench.sh (SEQ_MB, NFILES, STEPS, ...). Results and a table in $RESULTS.
set -u
BEFORE=${1:?usage: peer-before-after.sh BEFORE_CHECKOUT}
AFTER=$(cd "$(dirname "$0")/../.." && pwd)
P=${PEERS:-$AFTER/../shared/bench/peers}
export RESULTS=${RESULTS:-/tmp/berth-before-after} OUT_BASE=${OUT_BASE:-/var/tmp/berth-before-after}
mkdir -p "$RESULTS" "$OUT_BASE/local" /mnt/berth-before /mnt/berth-after
rm -rf "$OUT_BASE/before" "$OUT_BASE/after"
cd "$OUT_BASE" || exit 1
up() { # CHECKOUT NAME: berth up, one at a time (startup under load is slow)
  setsid node "$1/bin/berth.js" up --dir "$OUT_BASE/$2" --mount "/mnt/berth-$2" > "$OUT_BASE/$2.log" 2>&1 &
  echo $!
  for _ in $(seq 120); do mountpoint -q "/mnt/berth-$2" && return; sleep 1; done
}
B=$(up "$BEFORE" before)
A=$(up "$AFTER" after)
stop() {
  bash "$P/moosefs.sh" down >/dev/null 2>&1
  kill -TERM "$B" "$A" 2>/dev/null
  for _ in $(seq 60); do kill -0 "$B" 2>/dev/null || kill -0 "$A" 2>/dev/null || break; sleep 0.5; done
}
trap stop EXIT
mountpoint -q /mnt/berth-before && mountpoint -q /mnt/berth-after || { echo "a berth did not mount (see $OUT_BASE/*.log)"; exit 1; }
bash "$P/moosefs.sh" up > "$OUT_BASE/mfs-up.log" 2>&1
uptime
bash "$P/run-target.sh" local "$OUT_BASE/local" 1 1
bash "$P/run-target.sh" moosefs /mnt/bench-mfs 1 1
bash "$P/run-target.sh" berth-before /mnt/berth-before 1 1
bash "$P/run-target.sh" berth-after /mnt/berth-after 1 1
bash "$P/table.sh" local moosefs berth-before berth-after

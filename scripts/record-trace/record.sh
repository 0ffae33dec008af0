#!/bin/bash
# Records the simulator's real-program traces (README "Policy and simulator", "Traces of real
# programs"). Needs valgrind, gcc, python3, sqlite3, lua5.4, perl, xz-utils, redis-server
# (Debian packages). Not run by npm test: the traces it writes are committed.
#
#   scripts/record-trace/record.sh [OUT_DIR] [NAME...]
#
# Each program runs under valgrind's lackey (--trace-mem=yes: every instruction fetch, load and
# store); llc-filter.c keeps what misses a 256 KiB 16-way LLC and cuts epochs of 250,000
# instructions. The footprints are kept to a few MiB because lackey runs programs ~100-300× slower.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../test/fixtures/traces}
shift || true
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/llc-filter" "$here/llc-filter.c"
gcc -O2 -o "$work/kernels" "$here/kernels.c" -lm
INSNS=${INSNS:-250000}
EPOCHS=${EPOCHS:-240}
LLC=262144

# record NAME SKIP_EPOCHS -- COMMAND...: traces COMMAND until EPOCHS epochs are written.
record() {
  local name=$1 skip=$2
  shift 3
  local fifo=$work/$name.fifo
  rm -f "$fifo"
  mkfifo "$fifo"
  echo "recording $name: $*" >&2
  valgrind --tool=lackey --trace-mem=yes --log-file="$fifo" "$@" >/dev/null 2>&1 &
  local vg=$!
  "$work/llc-filter" -e $INSNS -m $EPOCHS -k "$skip" -c $LLC < "$fifo" | gzip -9 > "$out/$name.csv.gz"
  kill "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  echo "  $name: $(zcat "$out/$name.csv.gz" | wc -l) rows, $(stat -c %s "$out/$name.csv.gz") bytes" >&2
}

# record_server NAME SKIP PORT PROTO KEYS REQUESTS PHASE -- SERVER...: the server under lackey,
# driven by loadgen.py (native python) until EPOCHS epochs are written.
record_server() {
  local name=$1 skip=$2 port=$3 proto=$4 keys=$5 reqs=$6 phase=$7
  shift 8
  python3 "$here/loadgen.py" "$proto" "$port" "$keys" "$reqs" "$phase" >/dev/null 2>&1 &
  local lg=$!
  record "$name" "$skip" -- "$@"
  kill "$lg" 2>/dev/null || true
  wait "$lg" 2>/dev/null || true
}

want() { [ $# -eq 0 ] || [[ " $WANT " == *" $1 "* ]]; }
WANT="$*"

if want python; then
  cat > "$work/bench.py" <<'PY'
import random
rng = random.Random(7)
# an object store with skewed lookups and a periodic rebuild of part of it
items = {i: [i, str(i) * 3, {'a': i}] for i in range(40000)}
hot = list(range(0, 40000, 13))
total = 0
for rnd in range(200000):
    if rnd % 20000 == 0:
        hot = [rng.randrange(40000) for _ in range(3000)]
    k = hot[rng.randrange(len(hot))] if rng.random() < 0.9 else rng.randrange(40000)
    total += items[k][0]
    if rnd % 97 == 0:
        items[k] = [k, str(k) * 3, {'a': rnd}]
print(total)
PY
  record python 8 -- /usr/bin/python3 -S -E "$work/bench.py"
fi
if want sqlite; then
  {
    echo "PRAGMA cache_size=-16000;"
    echo "CREATE TABLE acct(id INTEGER PRIMARY KEY, branch INT, balance INT, name TEXT);"
    echo "CREATE TABLE hist(id INTEGER PRIMARY KEY, acct INT, delta INT, note TEXT);"
    echo "CREATE INDEX hist_acct ON hist(acct);"
    echo "BEGIN;"
    echo "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<20000) INSERT INTO acct SELECT x, x%50, 1000, printf('customer-%08d', x) FROM c;"
    echo "COMMIT;"
    python3 - <<'PY'
import random
r = random.Random(3)
for i in range(6000):
    a = int(20000 * r.random() ** 3) + 1
    k = r.random()
    if k < 0.5:
        print(f"SELECT balance,name FROM acct WHERE id={a};")
    elif k < 0.8:
        print(f"UPDATE acct SET balance=balance-{i%7} WHERE id={a}; INSERT INTO hist(acct,delta,note) VALUES({a},{i%7},'t{i}');")
    elif k < 0.95:
        print(f"SELECT count(*),sum(delta) FROM hist WHERE acct={a};")
    else:
        print(f"SELECT branch,sum(balance) FROM acct WHERE id BETWEEN {a} AND {a+400} GROUP BY branch;")
PY
  } > "$work/mix.sql"
  record sqlite 4 -- /usr/bin/sqlite3 :memory: -init "$work/mix.sql" ".quit"
fi
if want cg; then
  record cg 2 -- "$work/kernels" cg 300 1000
fi
if want pagerank; then
  record pagerank 20 -- "$work/kernels" pagerank 60000 8 1000
fi
if want xz; then
  cat /usr/bin/valgrind* /usr/lib/x86_64-linux-gnu/libc.so.6 /usr/bin/sqlite3 | head -c 6000000 > "$work/data"
  record xz 2 -- /usr/bin/xz -6 -T1 -c "$work/data"
fi
if want lua; then
  cat > "$work/bt.lua" <<'LUA'
-- binary trees: allocation-heavy, with a long-lived tree beside short-lived ones
local function make(d) if d == 0 then return {} end return { make(d - 1), make(d - 1) } end
local function check(t) if not t[1] then return 1 end return 1 + check(t[1]) + check(t[2]) end
local long = make(14)
local s = 0
for i = 1, 400 do s = s + check(make(10)) + (i % 8 == 0 and check(long) or 0) end
print(s)
LUA
  record lua 2 -- /usr/bin/lua5.4 "$work/bt.lua"
fi
if want perl; then
  python3 -c "
import random
r=random.Random(5); w=['w%d'%int(30000*r.random()**2) for _ in range(400000)]
print('\n'.join(' '.join(w[i:i+12]) for i in range(0,len(w),12)))" > "$work/text"
  cat > "$work/wc.pl" <<'PL'
my %c; while (<>) { for my $w (split) { $c{$w}++ } }
my @top = (sort { $c{$b} <=> $c{$a} } keys %c)[0..9]; print "@top\n";
PL
  record perl 4 -- /usr/bin/perl "$work/wc.pl" "$work/text"
fi
if want gcc; then
  cat "$here/kernels.c" "$here/llc-filter.c" | sed 's/^int main/static int main_unused/' > "$work/unit.c"
  gcc -E "$work/unit.c" -o "$work/unit.i" 2>/dev/null || true
  record gcc 4 -- "$(gcc -print-prog-name=cc1)" -fpreprocessed -quiet -O2 "$work/unit.i" -o "$work/unit.s"
fi
if want redis; then
  record_server redis 40 16379 redis 12000 400000 40000 -- /usr/bin/redis-server --port 16379 --save "" --appendonly no --daemonize no
fi

#!/bin/bash
# The stderr of small piped edl runs (score with cool-down and idle countdowns, score --tune, score-dir, data fetch,
# a score waiting for the host lock), for a before/after comparison of the progress display:
#   bench/progress_stderr.sh OLD_CHECKOUT /tmp/before; bench/progress_stderr.sh . /tmp/after; diff -r /tmp/before /tmp/after
# (audit figures, window times, archive stamps, the gzip md5 and the output folder differ; the progress lines must not).
set -u
CHECKOUT=$(realpath "$1"); OUT=$(realpath -m "$2"); rm -rf "$OUT"; mkdir -p "$OUT/w"
PY=${PY:-python}
export PYTHONPATH="$CHECKOUT/tests:$CHECKOUT" EDL_DATA_DIR="$OUT/w/cache" EDL_POWERCAP_ROOT="$OUT/w/nopowercap"
export EDL_NVML_MODULE=fake_pynvml FAKE_NVML_MODE="" FAKE_NVML_WATTS=100 FAKE_NVML_EPOCH=0 FAKE_NVML_STEP_S=0
export EDL_HOST_LOCK="$OUT/w/lock" FAKE_NVML_TEMPS=40
cd "$OUT/w"
$PY - <<'PY'
from pathlib import Path
from builders import oracle_images, oracle_model, save_npz, make_tarball, python_batch_bytes
from evaluator.data import formats
images, labels = oracle_images(1000, correct=917)
save_npz(Path("set.npz"), images, labels)
Path("subs").mkdir()
oracle_model(Path("subs/a.onnx")); oracle_model(Path("subs/b.onnx"))
oracle_model(Path("m.onnx"))
make_tarball(Path("cifar-10-python.tar.gz"), formats.PY_MEMBER, python_batch_bytes(images, labels))
PY
E="$PY -B -m evaluator"
# 1. score: cool-down countdown (fake GPU cooling), idle countdown, warm-up, 3 passes, audit
FAKE_NVML_TEMPS=60,60,60,55,50,41 $E score m.onnx --data set.npz --passes 3 --idle-seconds 1 --cooldown 10 --target-temp 40 --out o1 >/dev/null 2>"$OUT/score.err"; echo "rc $?" >>"$OUT/score.err"
# 2. score with --tune, no GPU
FAKE_NVML_MODE=absent $E score m.onnx --data set.npz --passes 2 --idle-seconds 0 --cooldown 0 --tune --tune-rounds 1 --tune-seconds 0.05 --out o2 >/dev/null 2>"$OUT/tune.err"; echo "rc $?" >>"$OUT/tune.err"
# 3. score-dir: two submissions, two repeats each
FAKE_NVML_MODE=absent $E score-dir subs --data set.npz --passes 2 --repeat 2 --idle-seconds 0 --cooldown 0 --out res >/dev/null 2>"$OUT/scoredir.err"; echo "rc $?" >>"$OUT/scoredir.err"
# 4. data fetch from a file URL (not the official md5: download lines, then the refusal)
EDL_CIFAR10_URL="file://$OUT/w/cifar-10-python.tar.gz" $E data fetch >/dev/null 2>"$OUT/fetch.err"; echo "rc $?" >>"$OUT/fetch.err"
# 5. a second score waiting for the host lock held by another process
FAKE_NVML_MODE=absent $PY -c "
import fcntl,os,time,sys
fd=os.open('$OUT/w/lock',os.O_RDWR|os.O_CREAT); fcntl.flock(fd,fcntl.LOCK_EX); os.ftruncate(fd,0); os.write(fd,b'edl pid 1\n'); time.sleep(8)" &
sleep 0.5
FAKE_NVML_MODE=absent $E score m.onnx --data set.npz --passes 2 --idle-seconds 0 --cooldown 0 --out o3 >/dev/null 2>"$OUT/lock.err"; echo "rc $?" >>"$OUT/lock.err"
wait

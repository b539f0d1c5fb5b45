#!/usr/bin/env bash
# Every GPU path on a bare GPU machine, in parts of under 10 minutes each; results as JSON and logs in $OUT.
#
#   here:        python bench/gpu_carry.py       (the wheels that machine lacks: .gpu/wheels, .gpu/wheels-tests)
#   there:       bash bench/gpu_check.sh 1 2    (carry .gpu/wheels, .gpu/wheels-tests; part 1, then part 2 in
#                what is left of the call's budget; `2` alone in the next call, GPU_CHECK_SKIP="render ..." for the
#                steps that came back already); then here: python bench/gpu_report.py <the returned folders>
#                --out docs/perf/<date>-<device>.json (one record, and the tables for docs/PERFORMANCE.md)
#   music:       make gpu-corpus    (here: the game soundtracks in three packs of 40 MiB, .gpu/corpus, -2, -3)
#                bash bench/gpu_check.sh quality baseline; ... quality recipe    (there, carry .gpu/wheels and
#                .gpu/corpus; then here: python bench/quality.py --report A/results.json B/results.json)
#                bash bench/gpu_check.sh ship   (there, carry .gpu/wheels, .gpu/corpus and .gpu/ship: base on the
#                real music, resumed from .gpu/ship/last.pt if carried; for the next call copy $OUT/ship's last.pt
#                and metrics.jsonl to .gpu/ship, and its best.pt, if one came back, out of .gpu: only a call that
#                improved validation writes one, and two checkpoints would not fit the carry). Its N-th call
#                (N = 2, 3) trains on other music, scored on the same validation audio:
#                GPU_CHECK_PACK=.gpu/corpus-N bash bench/gpu_check.sh ship, carrying .gpu/corpus-N instead
#   dry run:     PYTHON=<a venv's python> GPU_CHECK_DRY=1 bash bench/gpu_check.sh 1   (CPU, tiny sizes: the
#                plumbing only; it installs the wheels into that Python, so give it a venv holding only torch,
#                numpy, scipy, pillow and tqdm, as the GPU image does, and wheels for its Python version:
#                python bench/gpu_carry.py --python 3.12 3.11 for a 3.11 venv)
#
# Part 1: the gpu tests (the persistent kernel's in a step of their own), bench/generation.py (the graph and
# Triton backends and the cached engine x batch 1/256/16 x 30/20 layers, beside the plain PyTorch cached step,
# eager and in CUDA graphs) and bench/train_throughput.py (base, 16 x 16384: the project's step in fp32, bf16,
# bf16 + compile, beside plain compiled bf16 loops of the textbook WaveNet and of the project's model). Each bench
# runs the goals' rows first. Its steps are limited to about 10 minutes in all, part 2's to about 11;
# GPU_CHECK_SECONDS (below) keeps each inside a call of 600 s.
# Part 2: first what needs no training: the stream's renderer with the best GPU backend on an untrained base for
# 60 s beside a playout that takes audio at real time (no encoder: that machine has no ffmpeg), the persistent
# kernel in bench/generation.py beside the plain reference, bench/persistent_profile.py (its phases, block by
# block) and bench/handoff.py (one hand-off between SMs, through L2 and through a cluster's shared memory); then
# end to end: train.py on the synthetic corpus for about two minutes, generate.py from its checkpoint, and the
# renderer on that checkpoint for 20 s.
# A session's 15 minutes of device time hold part 1 and the start of part 2: `1 2` runs part 2 in what part 1
# leaves of its budget, and right after it returns, while the machine is warm (it waits 30 s), part 2 can go on
# with what status says is left, less a minute: for example GPU_CHECK_SECONDS=150 GPU_CHECK_SKIP="render"
# bash bench/gpu_check.sh 2 with timeout_s 170. The next session runs the rest of part 2.
# quality VARIANT: one variant of bench/quality.py at the GPU scale (base, 7 minutes), a call each, since two do not
# fit in one; the report joins them (same corpus, same validation windows). ship: train.py on the packed real music
# for what is left of the call (about 9 minutes), checkpointing every 1000 steps and at the SIGTERM of its time
# limit, so that the next call resumes at the step where this one stopped.
# Each step has its own time limit and its exit status is recorded; a failing step does not stop the others. The
# parts of one call together keep within GPU_CHECK_SECONDS (default 580): a step gets what is left of it if that is less than
# its own limit, and one that would get under 15 s is skipped and recorded so, so that the part ends, with its
# results written, inside a device call of 600 s (the benches write their JSON after every row).
set -uo pipefail
[ $# -gt 0 ] || { echo "usage: bench/gpu_check.sh 1|2|1 2|quality VARIANT|ship" >&2; exit 2; }
if [ "$1" = quality ] || [ "$1" = ship ]; then parts=("$1"); else parts=("$@"); fi
part=${parts[0]}
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python=${PYTHON:-python3}  # the machine's own Python, the one with PyTorch; PYTHON=... for a dry run in another one
dry=${GPU_CHECK_DRY:-}
log="$OUT/part$part.log"
budget=${GPU_CHECK_SECONDS:-580}
begun=$(date +%s)
work=$(mktemp -d)  # corpora, runs and clips made on the way; removed at the end
trap 'rm -rf "$work"' EXIT

note() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log"; }

# step NAME SECONDS COMMAND...: run with a limit (its own, or what is left of the part's budget), output into the
# part's log, status into steps-partN.jsonl. At the limit the command gets SIGTERM, or $STEP_SIGNAL (pytest takes
# SIGINT as a Ctrl-C: it reports the tests it ran, their failures too, and writes its junit XML), then SIGKILL 5 s on
step() {
    local name=$1 limit=$2 start rc left
    shift 2
    case " ${GPU_CHECK_SKIP:-} " in *" $name "*)  # done by an earlier call
        note "$name: skipped, as GPU_CHECK_SKIP asks"
        printf '{"step": "%s", "skipped": "asked"}\n' "$name" >>"$OUT/steps-part$part.jsonl"
        return
    esac
    left=$((budget - ($(date +%s) - begun) - 15))  # kept back: a killed step's last 5 s and the closing notes
    if [ "$left" -lt 15 ]; then
        note "$name: skipped, ${left} s left of the call's ${budget} s"
        printf '{"step": "%s", "skipped": true}\n' "$name" >>"$OUT/steps-part$part.jsonl"
        return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    note "$name (at most ${limit} s): $*"
    start=$(date +%s)
    timeout -s "${STEP_SIGNAL:-TERM}" -k 5 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    note "$name: exit $rc after $(($(date +%s) - start)) s"
    printf '{"step": "%s", "exit": %d, "seconds": %d}\n' "$name" "$rc" "$(($(date +%s) - start))" >>"$OUT/steps-part$part.jsonl"
}

if ! "$python" -c "import torch" 2>/dev/null; then
    note "$python has no PyTorch: give the Python that has it as PYTHON=..."
    exit 2
fi
if [ -d .gpu/wheels ]; then
    packages=(hydra-core omegaconf soundfile ffmpeg-python)
    [ -d .gpu/wheels-tests ] && packages+=(boto3 pytest)
    wheels=(--no-index --find-links .gpu/wheels --find-links .gpu/wheels-tests)
    step install 120 "$python" -m pip install "${wheels[@]}" "${packages[@]}"
    if ! "$python" -c "import hydra, soundfile" 2>/dev/null; then  # an environment that takes no installs
        carried=$(ls .gpu/wheels*/*.whl | sed 's#.*/##; s/-.*//' | sort -u)  # exactly these, beside what it has
        step install-aside 120 "$python" -m pip install "${wheels[@]}" --no-deps --target "$work/site" $carried
        export PYTHONPATH=$PYTHONPATH:$work/site
    fi
fi
"$python" - <<'EOF' >>"$log" 2>&1
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
EOF

if [ -n "$dry" ]; then
    device=cpu models="tiny" batches="1 4" target=512 batch=2 train_model=tiny render_seconds=5
    train_variants=() backends=()
else
    # the goals' rows first (30 layers, one stream and 256), so that a bench cut short at its limit has them
    device=cuda models="base base20" batches="1 256 16" target=16384 batch=16 train_model=base render_seconds=60
    # the plain reference first, then what the first-light issue asks of graph and Triton; the persistent kernel's
    # rows run in part 2, in a process of their own (a fault there leaves the process's GPU context unusable)
    backends=(--backends plain-graph graph triton triton-bf16 plain cached triton:spread triton-bf16:spread naive)
    # the goal's pair first (the project's compiled bf16 step beside the textbook WaveNet's compiled bf16 loop), then
    # the same model in a plain loop: the last step of part 1 gets what is left of its budget, and a bench cut short
    # keeps the rows it finished
    train_variants=(--variants bf16+compile textbook-bf16+compile plain-bf16+compile bf16 fp32 bf16+compile-layerwise)
fi

for part in "${parts[@]}"; do  # one budget for all of them
    log="$OUT/part$part.log"
    if [ "$part" = 1 ]; then
        if [ -z "$dry" ]; then
            tests=(-m pytest -m gpu -v --tb=short --durations=20 -p no:cacheprovider)  # -v: each result as it comes
            STEP_SIGNAL=INT step gpu-tests 120 "$python" "${tests[@]}" --junitxml="$OUT/gpu-tests.xml" tests/test_generation.py
            # the persistent kernel's first run on a GPU: in a process of its own, so that a fault cannot stop the rest
            STEP_SIGNAL=INT step persistent-tests 90 "$python" "${tests[@]}" --junitxml="$OUT/persistent-tests.xml" \
                tests/test_persistent.py
        fi
        step generation 200 "$python" bench/generation.py --device "$device" --models $models --batches $batches \
            "${backends[@]}" --seconds 0.5 --json "$OUT/generation.json"
        step train-throughput 200 "$python" bench/train_throughput.py --device "$device" --model "$train_model" \
            --batch "$batch" --target "$target" --steps 10 --warmup 3 "${train_variants[@]}" --json "$OUT/train-throughput.json"
    elif [ "$part" = 2 ]; then
        # the steps that need no training first, so that a short call (what is left of a session after part 1) has them:
        # the stream's renderer on the model the station airs (untrained: the speed is the same), the persistent kernel
        # in bench/generation.py beside the plain reference, its phases (its profiling build), and one hand-off between
        # SMs, through L2 (as persistent.cu does) and through a cluster's shared memory
        step render 120 "$python" bench/stream_render.py --model "$train_model" --seconds "$render_seconds" \
            --json "$OUT/stream-render.json"
        if [ -z "$dry" ]; then
            step generation-persistent 120 "$python" bench/generation.py --models $models --batches $batches \
                --backends plain-graph persistent persistent-bf16 --seconds 0.5 --json "$OUT/generation-persistent.json"
            step persistent-profile 60 "$python" bench/persistent_profile.py --models base --batches 1 16 \
                --json "$OUT/persistent-profile.json"
            step handoff 60 "$python" bench/handoff.py --json "$OUT/handoff.json"
        fi
        step corpus 60 "$python" -m data_prep.demo_corpus --out "$work/corpus" --tracks 8
        if [ -n "$dry" ]; then
            train=(model=tiny train.max_steps=20 train.device=cpu data.target_length=512 data.batch_size=2)
        else
            train=(+exp=lofi_base train.max_steps=600 train.val_interval=200 train.sample_interval=600)
        fi
        step train 200 "$python" train.py "${train[@]}" data=folder "data.source=$work/corpus" "data.cache_dir=$work/cache" \
            logger=none name=gpu-check "hydra.run.dir=$work/run"
        checkpoint=$(ls "$work"/run/checkpoints/last.pt 2>/dev/null || true)
        cp "$work"/run/metrics.jsonl "$OUT/train-metrics.jsonl" 2>/dev/null
        if [ -n "$checkpoint" ]; then
            step generate 90 "$python" generate.py "checkpoint=$checkpoint" num_clips=4 batch_size=4 seconds=4 \
                "out_dir=$work/clips" "hydra.run.dir=$work/generate"
            step render-trained 60 "$python" bench/stream_render.py --checkpoint "$checkpoint" --seconds $((render_seconds / 3)) \
                --json "$OUT/stream-render-trained.json"
        else
            note "no checkpoint from train.py: generate and render skipped"
        fi
    elif [ "$part" = quality ] || [ "$part" = ship ]; then
        pack=${GPU_CHECK_PACK:-.gpu/corpus}  # ship's second and third calls: .gpu/corpus-2 and -3, more music
        if [ -n "$dry" ] && [ ! -f "$pack/pack.json" ]; then  # the dry run packs the synthetic corpus
            step corpus 60 "$python" -m data_prep.demo_corpus --out "$work/demo" --tracks 8
            pack=$work/pack
            step pack 60 "$python" -m data_prep.pack "$work/demo" --out "$pack"
        fi
        step unpack 120 "$python" -m data_prep.pack --unpack "$pack" --out "$work/corpus"
        if [ "$part" = quality ]; then
            variant=${2:?usage: bench/gpu_check.sh quality baseline|recipe[:KEY=VALUE,...]}
            if [ -n "$dry" ]; then
                sizes=(--scale cpu --minutes 0.1 --val-windows 8 --listen-seconds 0.5)
            else
                sizes=(--scale gpu)
            fi
            step quality 570 "$python" bench/quality.py --corpus "$work/corpus" "${sizes[@]}" --variants "$variant" \
                --out "$OUT/quality"
        else
            if [ -n "$dry" ]; then
                train=(model=tiny train.device=cpu data.target_length=512 data.batch_size=2 "train.max_steps=${SHIP_STEPS:-40}" train.val_interval=10)
            else  # about 20 minutes over three calls, if base trains at ~26 steps/s (predicted from the GUIDE's anchor)
                train=(+exp=lofi_base "train.max_steps=${SHIP_STEPS:-30000}" train.val_interval=1000 train.sample_interval=10000)
            fi
            run=$work/ship
            mkdir -p "$run/checkpoints"
            [ -f .gpu/ship/last.pt ] && cp .gpu/ship/last.pt "$run/checkpoints/" && cp .gpu/ship/metrics.jsonl "$run/"
            step train "${SHIP_SECONDS:-600}" "$python" train.py "${train[@]}" data=folder "data.source=$work/corpus" \
                "data.cache_dir=$work/cache" logger=none name=ship "hydra.run.dir=$run" train.resume=auto
            mkdir -p "$OUT/ship"
            cp "$run"/checkpoints/last.pt "$run"/checkpoints/best.pt "$run"/metrics.jsonl "$OUT/ship/" 2>/dev/null
            note "ship: $(tail -n 1 "$run/metrics.jsonl" 2>/dev/null)"
        fi
    fi
    note "part $part done; results in $OUT"
done

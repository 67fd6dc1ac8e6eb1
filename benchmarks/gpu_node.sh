#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a bare GPU node, in one command, from this source tree:
#
#   bash benchmarks/gpu_node.sh OUT_DIR [--wheels DIR] [--budget SECONDS] [--python PYTHON]
#                               [--shm-min MIB] [--require MODULE:DISTRIBUTION]... [-- CHECK_OPTIONS]
#
# The node's python (python3, or --python) must carry torch and torchvision: its own build, for its
# CUDA. bof is not installed (its pins, Python 3.11 and torch 2.14.1, need not be the node's): it
# runs from this tree through PYTHONPATH, which torchrun's `-m bof` workers inherit. The modules bof
# imports on the check's path that the node lacks are installed from the wheels in --wheels (a node
# has no network: README, "On a GPU", says how to fill the folder with `pip download`) into
# OUT_DIR/python-packages, leaving the node's python as it was; without --wheels the script names
# them and stops. /dev/shm must have --shm-min MiB free (default 1024): data-loader workers hand
# their batches over in shared memory, and a pretraining's 6 workers keep up to 12 batches of 128
# float32 224 x 224 images (0.86 GiB) in flight, where docker gives a container 64 MiB.
# Then it prints python, torch, CUDA and the GPUs and runs the check with --out OUT_DIR, --budget
# and CHECK_OPTIONS. What it prints also goes to OUT_DIR/gpu_node.log; the check writes
# OUT_DIR/gpu_check.json after every run and each run's log under OUT_DIR/runs/.
# Exit status: the check's; 2 if the node is not ready for it (nothing run).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# import name:distribution of what bof imports on the check's path (the parent, `bof pretrain` and
# `bof train`) beyond torch and torchvision; numpy and PIL come with torchvision as a rule
MODULES=(yaml:pyyaml tqdm:tqdm defusedxml:defusedxml pycocotools:pycocotools jsonschema:jsonschema
    cv2:opencv-python-headless numpy:numpy PIL:pillow)

usage() {
    sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
    exit 2
}

die() {
    printf 'gpu_node: %s\n' "$1" >&2
    (($# == 1)) || printf '%s\n' "${@:2}" >&2
    exit 2
}

python=python3 wheels= budget= shm_min=1024 out= check=()
while (($#)); do
    case $1 in
    --wheels) wheels=${2:?--wheels DIR} && shift 2 ;;
    --budget) budget=${2:?--budget SECONDS} && shift 2 ;;
    --python) python=${2:?--python PYTHON} && shift 2 ;;
    --shm-min) shm_min=${2:?--shm-min MIB} && shift 2 ;;
    --require) MODULES+=("${2:?--require MODULE:DISTRIBUTION}") && shift 2 ;;
    --) shift && check=("$@") && break ;;
    -*) usage ;;
    *)
        [[ -z $out ]] || usage
        out=$1 && shift
        ;;
    esac
done
[[ -n $out ]] || usage
mkdir -p "$out"
out=$(cd "$out" && pwd)
# tee ignores the signals that stop the check, so that the check's last lines still reach the log
exec > >(trap '' INT TERM HUP && exec tee -a "$out/gpu_node.log") 2>&1

command -v "$python" > /dev/null || die "no $python here: --python names the node's python (the one with torch)"
if ! problem=$("$python" -c 'import torch, torchvision' 2>&1); then
    die "$python cannot import torch and torchvision: the check uses the node's own build (for its CUDA);" \
        "--python names another. Python said: $(tail -n 1 <<< "$problem")"
fi

# data-loader workers pass batches through /dev/shm: too little ends a run with a bus error
[[ -d /dev/shm ]] || die "no /dev/shm: data-loader workers hand their batches over in shared memory"
shm_kib=$(df -Pk /dev/shm 2> /dev/null | awk 'NR == 2 { print $4 }')
[[ $shm_kib =~ ^[0-9]+$ ]] || die "cannot read the free space of /dev/shm (df -Pk /dev/shm)"
shm_free=$((shm_kib / 1024))
if ((shm_free < shm_min)); then
    die "/dev/shm has $shm_free MiB free, the check needs $shm_min (--shm-min): data-loader workers hand" \
        "their batches over in shared memory. Docker: run with --shm-size=8g or --ipc=host; Kubernetes:" \
        "an emptyDir with medium: Memory mounted at /dev/shm. --shm-min 0 skips this (at your risk)."
fi

# bof from this tree; the dependencies installed by an earlier call into this OUT_DIR after it
site_packages() {
    [[ -d $out/python-packages ]] || return 0
    find "$out/python-packages" -type d \( -name site-packages -o -name dist-packages \) | paste -sd: -
}
export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
missing() {
    local entry sites
    sites=$(site_packages)
    for entry in "${MODULES[@]}"; do
        PYTHONPATH="$PYTHONPATH${sites:+:$sites}" "$python" -c "import ${entry%%:*}" 2> /dev/null || echo "$entry"
    done
}
mapfile -t absent < <(missing)
if ((${#absent[@]})); then
    dists=("${absent[@]#*:}")
    if [[ -z $wheels ]]; then
        version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        die "$python lacks ${absent[*]%%:*} (import names); bof needs them on the check's path." \
            "Download their wheels where there is a network, copy the folder here and pass --wheels:" \
            "  pip download -d wheels --only-binary=:all: --python-version $version --implementation cp \\" \
            "    --platform manylinux_2_28_$(uname -m) --platform manylinux2014_$(uname -m) ${dists[*]}"
    fi
    "$python" -m pip --version > /dev/null 2>&1 || die "$python has no pip to install ${dists[*]} with"
    echo "installing ${dists[*]} from $wheels into $out/python-packages"
    "$python" -m pip install --quiet --isolated --no-index --find-links "$wheels" --prefix "$out/python-packages" \
        "${dists[@]}" ||
        die "could not install ${dists[*]} from $wheels (pip's message above)"
    mapfile -t absent < <(missing)
    if ((${#absent[@]})); then
        first=${absent[0]%%:*}
        die "still not importable after the install: ${absent[*]%%:*} (import $first: $(
            PYTHONPATH="$PYTHONPATH:$(site_packages)" "$python" -c "import $first" 2>&1 | tail -n 1
        ))"
    fi
fi
sites=$(site_packages)
export PYTHONPATH="$PYTHONPATH${sites:+:$sites}"

"$python" - "$SRC" << 'EOF' || exit 2
import os, sys
import torch, bof

print(f"python {sys.version.split()[0]} ({sys.executable}), torch {torch.__version__}, CUDA {torch.version.cuda}")
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
print(f"GPUs: {', '.join(gpus) or 'none that torch can use'}")
here = os.path.realpath(os.path.dirname(bof.__file__))
print(f"bof {bof.__version__} from {here}")
if here != os.path.realpath(os.path.join(sys.argv[1], "bof")):
    sys.exit(f"gpu_node: the bof imported is not this tree's ({sys.argv[1]}): another one shadows it")
EOF
echo "/dev/shm: $shm_free MiB free"
exec "$python" -u "$SRC/benchmarks/gpu_check.py" --out "$out" ${budget:+--budget "$budget"} ${check[@]+"${check[@]}"}

#!/usr/bin/env bash
# The CIFAR-10 GPU row, prepared for a lent GPU machine (see benchmarks/gpu_cifar10.py).
#
#   benchmarks/gpu_cifar10.sh smoke          # about a minute: 2,048 images, 2 epochs of ResNet-18
#   benchmarks/gpu_cifar10.sh full [MIN]     # the row: as many epochs as fit in MIN minutes (default 8)
#   benchmarks/gpu_cifar10.sh both [MIN]     # smoke, then the row (default 6 minutes: one 10-minute call)
#
# The data: $CIFAR10_DATA, else .data/cifar10-train-jpg.tar.gz in the checkout (copy the shared archive
# there and name .data in the device tool's carry), else ../shared/data/ beside the checkout.
# Extra arguments after MIN go to gpu_cifar10.py (e.g. --backbone resnet34 --batch-size 256).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-smoke}
minutes=${2:-}
shift $(( $# > 2 ? 2 : $# ))
data=${CIFAR10_DATA:-.data/cifar10-train-jpg.tar.gz}
[ -f "$data" ] || data=../shared/data/cifar10-train-jpg.tar.gz
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch, sklearn, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'sklearn', sklearn.__version__)"
case "$mode" in
  smoke) python3 benchmarks/gpu_cifar10.py --smoke --data "$data" "$@" ;;
  full) python3 benchmarks/gpu_cifar10.py --budget-minutes "${minutes:-8}" --data "$data" "$@" ;;
  both)
    python3 benchmarks/gpu_cifar10.py --smoke --data "$data" "$@"
    python3 benchmarks/gpu_cifar10.py --budget-minutes "${minutes:-6}" --data "$data" "$@"
    ;;
  *) echo "usage: $0 smoke|full|both [MINUTES] [gpu_cifar10.py arguments]" >&2; exit 2 ;;
esac

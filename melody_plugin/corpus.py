"""Thin re-export: the old module path melody_plugin.corpus, kept so old imports keep working.

The code lives in melody_plugin.io.inputs, melody_plugin.tokens.corpus.
"""

from melody_plugin.io.inputs import _TFRECORD_NAME, default_input, input_files, is_tfrecord_name  # noqa: F401
from melody_plugin.tokens.corpus import (  # noqa: F401
    _CONVERSION_WORDS,
    FAILURE_REASONS,
    Corpus,
    EncodedCorpus,
    FileResult,
    Reading,
    _extract_file,
    _init_worker,
    _reason_kind,
    _sources,
    _why_skipped,
    build_vocabulary,
    collect_melodies,
    corpus_report,
    create_dataset,
    encode_all,
    encode_corpus,
    encode_melody,
    eval_fraction,
    format_report,
    is_eval,
    prepare_melodies,
    scoring_melodies,
    split_key,
    transposed_copies,
)

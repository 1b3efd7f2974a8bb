"""Thin re-export: the old module path melody_plugin.pipelines, kept so old imports keep working.

The code lives in melody_plugin.generate.bundle, melody_plugin.interop.graph, melody_plugin.interop.magenta,
melody_plugin.interop.sequence_generator, melody_plugin.interop.units.
"""

from melody_plugin.interop.graph import (  # noqa: F401
    Chain,
    PartitionedPipeline,
    _note_sequences,
    get_pipeline,
    load_vocabulary,
    melody_pipeline,
    run_pipeline_serial,
)
from melody_plugin.interop.magenta import (  # noqa: F401
    MAGENTA,
    MAGENTA_IMPORT_ERROR,
    Counter,
    Pipeline,
    _Counter,
    _ErrorBases,
    _GeneratorBase,
    _magenta_installed,
    _magenta_pipeline,
    _magenta_sequence_generator,
    _magenta_statistics,
    _merge_statistics,
    _note_seq_melody_type,
    _note_sequence_type,
    _Pipeline,
    _PipelineKey,
    merge_statistics,
    statistics_dict,
)
from melody_plugin.interop.sequence_generator import (  # noqa: F401
    MelodySequenceGenerator,
    SequenceGeneratorError,
    _cut,
    _generate_args,
    _run_dir_of,
    get_generator_map,
)
from melody_plugin.interop.units import (  # noqa: F401
    EVAL,
    TRAINING,
    FilePartition,
    GridError,
    KeyTransposer,
    MelodyEncoder,
    MelodyExtractor,
    Quantizer,
    SequenceExampleMaker,
    TimeChangeSplitter,
    _melody_input_type,
    _on_grid,
    _rests,
    _Unit,
    melody_from_note_seq_melody,
    note_seq_melody_to_melody,
)

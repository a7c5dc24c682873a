"""Transcripts: the `transcript.jsonl` format, its validating reader, importers and writer.

Probe scoring lives in `deltamem_chat.scoring`.
"""

from deltamem.rendering import ROLES
from deltamem_chat.transcripts.importers import (
    LOCOMO_CATEGORIES,
    ImportFormatError,
    import_locomo,
    import_longmemeval,
    import_memoryagentbench,
    import_openai,
    import_sharegpt,
    read_locomo,
    read_longmemeval,
    read_memoryagentbench,
)
from deltamem_chat.transcripts.model import (
    Item,
    Message,
    Probe,
    Transcript,
    TranscriptMeta,
)
from deltamem_chat.transcripts.reader import (
    TranscriptError,
    iter_transcript_items,
    load_transcript,
    parse_context,
)
from deltamem_chat.transcripts.writer import write_transcript, write_transcripts

__all__ = [
    "LOCOMO_CATEGORIES",
    "ROLES",
    "ImportFormatError",
    "Item",
    "Message",
    "Probe",
    "Transcript",
    "TranscriptError",
    "TranscriptMeta",
    "import_locomo",
    "import_longmemeval",
    "import_memoryagentbench",
    "import_openai",
    "import_sharegpt",
    "iter_transcript_items",
    "load_transcript",
    "parse_context",
    "read_locomo",
    "read_longmemeval",
    "read_memoryagentbench",
    "write_transcript",
    "write_transcripts",
]

"""Transcripts: the `transcript.jsonl` format, its validating reader, importers and writer.

Probe scoring lives in `deltamem_chat.scoring`; its original names are re-exported here.
"""

from deltamem_chat.scoring import (
    LaneSummary,
    ProbeOutcome,
    ProbeScore,
    ScoreSummary,
    is_hit,
    normalize_answer,
    score_probe,
    summarise,
    token_f1,
)
from deltamem_chat.transcripts.importers import (
    LOCOMO_CATEGORIES,
    ImportFormatError,
    import_locomo,
    import_longmemeval,
    import_openai,
    import_sharegpt,
)
from deltamem_chat.transcripts.model import (
    ROLES,
    ContextSuggestion,
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
from deltamem_chat.transcripts.writer import write_transcript

__all__ = [
    "LOCOMO_CATEGORIES",
    "ROLES",
    "ContextSuggestion",
    "ImportFormatError",
    "Item",
    "LaneSummary",
    "Message",
    "Probe",
    "ProbeOutcome",
    "ProbeScore",
    "ScoreSummary",
    "Transcript",
    "TranscriptError",
    "TranscriptMeta",
    "import_locomo",
    "import_longmemeval",
    "import_openai",
    "import_sharegpt",
    "is_hit",
    "iter_transcript_items",
    "load_transcript",
    "normalize_answer",
    "parse_context",
    "score_probe",
    "summarise",
    "token_f1",
    "write_transcript",
]

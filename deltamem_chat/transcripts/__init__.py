"""Transcripts: the `transcript.jsonl` format, its validating reader, importers, writer and probe scoring."""

from deltamem_chat.transcripts.importers import (
    LOCOMO_CATEGORIES,
    ImportFormatError,
    import_locomo,
    import_longmemeval,
    import_openai,
    import_sharegpt,
    read_locomo,
    read_longmemeval,
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
from deltamem_chat.transcripts.scoring import (
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
from deltamem_chat.transcripts.writer import write_transcript, write_transcripts

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
    "read_locomo",
    "read_longmemeval",
    "score_probe",
    "summarise",
    "token_f1",
    "write_transcript",
    "write_transcripts",
]

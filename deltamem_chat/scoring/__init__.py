"""Probe scoring: our own rule, and LoCoMo's and MemoryAgentBench's official protocols beside it.

Every protocol gives a `ProbeScore` whose `hit` and `f1` follow our rule (so recall and "the lanes differ" mean the
same under every protocol) and whose `score` and `metrics` are the protocol's own. docs/transcripts.md ("Scoring
protocols") describes what each computes.

This package imports nothing from `deltamem_chat.transcripts` at run time: the transcript reader imports the
normaliser from here.
"""

from deltamem_chat.scoring.interface import ProbeScore, ScoringProtocol
from deltamem_chat.scoring.locomo import LOCOMO_CATEGORY_NAMES, LocomoProtocol, locomo_score
from deltamem_chat.scoring.mab import MAB_METRICS, MabProtocol, mab_metrics
from deltamem_chat.scoring.normalize import normalize_answer
from deltamem_chat.scoring.ours import ABSTENTION_PHRASES, OursProtocol, abstains, is_hit, score_probe, token_f1
from deltamem_chat.scoring.protocols import DEFAULT_PROTOCOL, PROTOCOLS, get_protocol
from deltamem_chat.scoring.summary import CategorySummary, LaneSummary, ProbeOutcome, ScoreSummary, summarise

__all__ = [
    "ABSTENTION_PHRASES",
    "DEFAULT_PROTOCOL",
    "LOCOMO_CATEGORY_NAMES",
    "MAB_METRICS",
    "PROTOCOLS",
    "CategorySummary",
    "LaneSummary",
    "LocomoProtocol",
    "MabProtocol",
    "OursProtocol",
    "ProbeOutcome",
    "ProbeScore",
    "ScoreSummary",
    "ScoringProtocol",
    "abstains",
    "get_protocol",
    "is_hit",
    "locomo_score",
    "mab_metrics",
    "normalize_answer",
    "score_probe",
    "summarise",
    "token_f1",
]

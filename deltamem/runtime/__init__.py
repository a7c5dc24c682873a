"""The engine under the app: loading, lanes on one backbone, context policies, generation, sessions on disk."""

from deltamem.context import TRAINED_WRITE_HORIZON, ContextPolicy, PolicyError, WriteBudget
from deltamem.runtime.engine import (
    LANE_NAMES,
    ABEngine,
    Event,
    GenerationSettings,
    LaneDone,
    TokenEvent,
    TurnDone,
)
from deltamem.runtime.lanes import Lane, TurnStats
from deltamem.runtime.loading import ALIASES, Alias, LoadedModel, LoadError, RuntimeChoice, choose_runtime, load
from deltamem.runtime.session_io import SessionError, SessionIdentity, load_session, save_session

__all__ = [
    "ALIASES", "LANE_NAMES", "TRAINED_WRITE_HORIZON", "ABEngine", "Alias", "ContextPolicy", "Event",
    "GenerationSettings", "Lane", "LaneDone", "LoadError", "LoadedModel", "PolicyError", "RuntimeChoice",
    "SessionError", "SessionIdentity", "TokenEvent", "TurnDone", "TurnStats", "WriteBudget", "choose_runtime",
    "load", "load_session", "save_session",
]

"""Sessions kept and found again: a folder per saved chat under the user's data folder, and a SQLite index."""

from deltamem_chat.library.index import LibraryEntry, SessionIndex
from deltamem_chat.library.store import LibraryError, SessionLibrary, default_root

__all__ = ["LibraryEntry", "LibraryError", "SessionIndex", "SessionLibrary", "default_root"]

"""Turn chat exports and memory-benchmark files into transcripts, one module per format.

Each `import_*` function returns one `Transcript`; the `read_*` functions return every conversation of a
benchmark file (or the one asked for), keyed by the name its file should have. `write_transcripts` then
validates and saves them.
Problems with the input become an `ImportFormatError` that says where in the input the problem is.
"""

from deltamem_chat.transcripts.importers.common import ImportFormatError
from deltamem_chat.transcripts.importers.locomo import LOCOMO_CATEGORIES, import_locomo, read_locomo
from deltamem_chat.transcripts.importers.longmemeval import import_longmemeval, read_longmemeval
from deltamem_chat.transcripts.importers.memoryagentbench import (
    import_memoryagentbench,
    read_memoryagentbench,
)
from deltamem_chat.transcripts.importers.openai import import_openai
from deltamem_chat.transcripts.importers.sharegpt import import_sharegpt

__all__ = [
    "LOCOMO_CATEGORIES",
    "ImportFormatError",
    "import_locomo",
    "import_longmemeval",
    "import_memoryagentbench",
    "import_openai",
    "import_sharegpt",
    "read_locomo",
    "read_longmemeval",
    "read_memoryagentbench",
]

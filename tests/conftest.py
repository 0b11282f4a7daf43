import os
os.environ.setdefault("LLMREC_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

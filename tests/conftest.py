import os
os.environ.setdefault("LLMREC_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# several test processes share two cores: OpenMP busy-waiting would make them slow each other down many times over
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

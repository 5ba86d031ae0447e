"""What the Python scripts share about the real models: short names, file names, where they are
installed, and checksumming. No third-party imports (scripts/fetch-models.py uses it before any
pip package is installed)."""
import hashlib
import os

# Short name -> file in the models folder (installed by scripts/fetch-models.py).
MODEL_FILES = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
    "qwen0.5b": "qwen2.5-coder-0.5b-instruct.gguf",
    "qwen1.5b": "qwen2.5-coder-1.5b-instruct.gguf",
}

# Short name -> Hugging Face folder in the models folder (not GGUF: kept apart from MODEL_FILES,
# whose users read every entry as a GGUF file).
MODEL_DIRS = {
    "minilm": "all-MiniLM-L6-v2",
}


def models_dir():
    return os.environ.get("STEPQ_MODELS", os.path.expanduser("~/.cache/stepq/models"))


def f32_file(file):
    """The exact F32 copy scripts/make-f32-models.py writes for a model file."""
    return file.replace(".gguf", ".f32.gguf")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()

"""Column names and canonical labels, defined once (no stray string literals elsewhere)."""

# Manifest columns, always present (docs/data.md).
UTT_ID = "utt_id"
PATH = "path"
CORPUS = "corpus"
SPEAKER = "speaker"
GENDER = "gender"
SESSION = "session"
LABEL = "label"
TEXT = "text"
DURATION = "duration"
MANIFEST_COLUMNS = (UTT_ID, PATH, CORPUS, SPEAKER, GENDER, SESSION, LABEL, TEXT, DURATION)

# Optional columns.
AUDIO_HASH = "audio_hash"
ROLE = "role"  # cross-corpus manifests: which corpus a row comes from ("train" or "test")
IMPROVISED = "improvised"
PARTITION = "partition"  # a corpus's official partition (MSP-Podcast: Train, Development, Test1, …)
UNKNOWN_SPEAKER = "Unknown"  # segments of unidentified speakers: one group, never a test speaker
# Dimensional labels, floats in the corpus's own scale (NaN where a corpus has none);
# every manifest has them (serlib.corpora._common.finish adds NaN columns).
AROUSAL = "arousal"
VALENCE = "valence"
DOMINANCE = "dominance"
DIMENSIONS = (AROUSAL, VALENCE, DOMINANCE)

# Canonical label names (lower case); every adapter maps its codes onto these. Labels
# that a corpus defines apart from the basic ones stay apart (RAVDESS "calm", TESS
# "pleasant_surprise"); a run merges them only when asked (``merge``).
LABELS = (
    "neutral", "happy", "sad", "angry", "fear", "disgust", "surprise",
    "calm", "boredom", "excited", "frustrated", "other", "pleasant_surprise", "contempt",
)

# The classic IEMOCAP 4-class set.
FOUR_CLASSES = ("neutral", "happy", "sad", "angry")

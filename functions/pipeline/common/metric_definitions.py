"""What the training code prints and how SageMaker reads it.

The training scripts print one ``name=value`` pair per metric (several per line are fine); these regexes are
the jobs' ``MetricDefinitions`` and the tuning objective is ``validation:accuracy``. A test runs the real
training code and applies these regexes to its output.
"""

OBJECTIVE_METRIC = "validation:accuracy"

METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": "train:loss", "Regex": r"\btrain_loss=([0-9.eE+-]+)"},
    {"Name": "validation:loss", "Regex": r"\bvalid_loss=([0-9.eE+-]+)"},
    {"Name": "validation:accuracy", "Regex": r"\bvalid_accuracy=([0-9.eE+-]+)"},
    {"Name": "train:images_per_second", "Regex": r"\bimages_per_second=([0-9.eE+-]+)"},
    {"Name": "test:accuracy", "Regex": r"\btest_accuracy=([0-9.eE+-]+)"},
    # The int8 network a CPU endpoint would serve (train_model.py only; inference.py's gate reads metrics.json).
    {"Name": "test:int8_accuracy", "Regex": r"\bint8_test_accuracy=([0-9.eE+-]+)"},
    # The paired evaluation (train_model.py): the model as it will serve, the serving one on the same images.
    {"Name": "test:served_accuracy", "Regex": r"\bserved_test_accuracy=([0-9.eE+-]+)"},
    {"Name": "test:champion_accuracy", "Regex": r"\bchampion_test_accuracy=([0-9.eE+-]+)"},
    {"Name": "test:paired_difference", "Regex": r"\bpaired_difference=([0-9.eE+-]+)"},
]

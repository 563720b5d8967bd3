"""Record keys and metric names shared by the ClientApp and the ServerApp."""

from enum import StrEnum


class RecordKey(StrEnum):
    """Keys of records inside a Flower ``RecordDict``."""

    ARRAYS = "arrays"
    CONFIG = "config"
    METRICS = "metrics"
    SITE = "site"
    SITE_STATS = "site-stats"


class MetricKey(StrEnum):
    """Metric names sent by hospitals and written to run folders."""

    NUM_EXAMPLES = "num-examples"
    TRAIN_LOSS = "train-loss"
    TRAIN_ACCURACY = "train-accuracy"
    VAL_LOSS = "val-loss"
    VAL_ACCURACY = "val-accuracy"
    LOSS_SUM = "loss-sum"
    CONFUSION = "confusion-matrix"
    SCORE_HIST = "score-histogram"
    CALIBRATION = "calibration"
    SITE_NAME = "site-name"
    SERVER_ROUND = "server-round"

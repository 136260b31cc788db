"""Use a trained model: label videos (``Predictor``), draw the labels on them (``annotate_video``) and
export the network for deployment (``export_model``). ``load_trained_model`` rebuilds a checkpoint's
network and its test-time input pipeline (``ViewProtocol``)."""
from nlnet.inference.annotate import H264Writer, annotate_video, draw_labels
from nlnet.inference.loading import TrainedModel, ViewProtocol, load_trained_model, resolve_device
from nlnet.inference.predict import (
    FailedVideo,
    Predictor,
    VideoPrediction,
    WindowPrediction,
    find_videos,
    half_precision,
    predictions_to_json,
    top_classes,
    write_predictions,
)
from nlnet.inference.views import Timeline, Window, clip_starts, timeline_windows

__all__ = [
    "TrainedModel", "ViewProtocol", "load_trained_model", "resolve_device",
    "Predictor", "VideoPrediction", "WindowPrediction", "FailedVideo", "find_videos", "half_precision",
    "predictions_to_json", "top_classes", "write_predictions",
    "Timeline", "Window", "clip_starts", "timeline_windows",
    "H264Writer", "annotate_video", "draw_labels",
]

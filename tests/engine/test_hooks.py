"""Hooks own their state: the best metric lives in the checkpointer and comes back with a resumed run
(also from checkpoints of the older ``extra`` layout); the stop signal is read from the signal hook;
the TensorBoard writer is passed in, and training and testing write evaluations the same way."""
import os
import signal

from nlnet.checkpoint.files import CheckpointManager, load_checkpoint
from nlnet.engine.hooks import Checkpointer, EvalHook, SignalHandler
from nlnet.engine.hooks.tensorboard import TensorBoardLogger, open_writer, write_eval_metrics
from nlnet.engine.trainer import HookBase
from test_trainer import Batches
from test_trainer import make_trainer as make_stand_in_trainer  # stand-in model and data


def make_trainer(max_iter, hooks):
    return make_stand_in_trainer(None, Batches(), max_iter=max_iter, hooks=hooks)


def scores(*values):
    """An ``evaluate`` that returns the next of ``values`` as top1 at each call."""
    it = iter(values)
    return lambda: {"top1": next(it), "top5": 100.0, "mean_class_accuracy": 0.0, "num_videos": 1}


def test_best_metric_is_the_checkpointers_state_and_resumes(tmp_path):
    manager = CheckpointManager(directory=str(tmp_path), keep_last=5)
    checkpointer = Checkpointer(manager=manager, period=1)
    trainer = make_trainer(2, [checkpointer, EvalHook(period=1, evaluate=scores(40.0, 30.0))])
    trainer.train()
    assert (checkpointer.best_value, checkpointer.best_iteration) == (40.0, 1)
    state = load_checkpoint(manager.latest())
    assert state["hooks"] == {"Checkpointer": {"best_value": 40.0, "best_iteration": 1}}
    assert "extra" not in state
    # a resumed run: a later 35 is not a new best (the best of the first part is remembered)
    resumed = Checkpointer(manager=manager, period=1)
    trainer = make_trainer(3, [resumed, EvalHook(period=1, evaluate=scores(35.0))])
    trainer.load_state_dict(state)
    assert (resumed.best_value, resumed.best_iteration) == (40.0, 1)
    trainer.train()
    assert (resumed.best_value, resumed.best_iteration) == (40.0, 1)
    assert load_checkpoint(manager.best_path)["iteration"] == 1


def test_checkpoints_of_the_older_extra_layout_still_resume(tmp_path):
    manager = CheckpointManager(directory=str(tmp_path), keep_last=5)
    old = make_trainer(1, [])
    state = old.state_dict()
    del state["hooks"]
    state["extra"] = {"best_value": 55.0, "best_iteration": 7, "stop_signal": 15}
    checkpointer = Checkpointer(manager=manager, period=0)
    make_trainer(2, [checkpointer]).load_state_dict(state)
    assert (checkpointer.best_value, checkpointer.best_iteration) == (55.0, 7)


def test_stateless_hooks_store_nothing():
    trainer = make_trainer(1, [SignalHandler(), EvalHook(period=0, evaluate=scores(1.0), at_end=False)])
    assert trainer.state_dict()["hooks"] == {}
    assert HookBase().state_dict() == {}


def test_stop_signal_is_read_from_the_signal_hook():
    class SendSignal(HookBase):
        def after_step(self):
            if self.trainer.iter == 2:
                os.kill(os.getpid(), signal.SIGINT)

    signals = SignalHandler(signals=(signal.SIGINT,))
    trainer = make_trainer(5, [SendSignal(), signals])
    trainer.train()
    assert trainer.iter == 2 and trainer.stop_reason == "received SIGINT"
    assert signals.stop_signal == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after training


def scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_writer_is_passed_in_and_evaluations_written_one_way(tmp_path):
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    with open_writer(str(train_dir)) as writer:
        logger = TensorBoardLogger(writer=writer, period=1)
        trainer = make_trainer(2, [EvalHook(period=2, evaluate=lambda: {**scores(60.0)(), "tag": "val"}), logger])
        trainer.train()
        assert not hasattr(trainer, "summary_writer")
    assert logger.state_dict() == {"final_metrics": {"val/top1": 60.0, "val/top5": 100.0,
                                                     "val/mean_class_accuracy": 0.0}}
    logged = scalars(train_dir)
    assert logged["val/top1"] == [(2, 60.0)] and [s for s, _ in logged["train/loss"]] == [1, 2]
    with open_writer(str(test_dir)) as writer:
        write_eval_metrics(writer, scores(60.0)(), 2, tag="val")
    assert {k: v for k, v in scalars(test_dir).items()} == {k: v for k, v in logged.items() if k.startswith("val/")}
    # ranks other than 0 have no writer: the hook runs and writes nothing
    make_trainer(1, [EvalHook(period=1, evaluate=scores(1.0)), TensorBoardLogger(writer=None, period=1)]).train()


def test_progress_bar_writes_log_lines_above_itself(capsys):
    """While the bar runs, the console handler is tqdm's (logging_redirect_tqdm); afterwards it is back."""
    from nlnet.engine.hooks import ProgressBar
    from nlnet.utils.logger import get_logger, setup_logging

    setup_logging(None)
    console = list(get_logger().handlers)
    seen = []

    class Log(HookBase):
        def after_step(self):
            seen.append([type(h).__name__ for h in get_logger().handlers])
            get_logger().info(f"line at iteration {self.trainer.iter}")

    make_trainer(2, [ProgressBar(), Log()]).train()
    assert seen == [["_TqdmLoggingHandler"]] * 2
    assert get_logger().handlers == console and type(console[0]).__name__ == "StreamHandler"
    out = capsys.readouterr()
    assert "line at iteration 1" in out.out and "line at iteration 2" in out.out

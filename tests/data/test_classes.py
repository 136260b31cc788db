"""nlnet.data.classes: a dataset's class list against a checkpoint's, said in one line."""
from nlnet.data.classes import class_difference


def test_the_same_list_is_no_difference():
    assert class_difference(["a", "b", "c"], ("a", "b", "c")) is None


def test_another_order_is_called_that_with_the_first_index_that_differs():
    message = class_difference(["a", "c", "b"], ["a", "b", "c"])
    assert message.startswith("lists the checkpoint's 3 classes in another order (index 1 is 'c' here, 'b' in the "
                              "checkpoint)")


def test_other_classes_are_named():
    message = class_difference(["a", "b", "x"], ["a", "b", "c", "d"])
    assert message == ("its 3 classes differ from the 4 the checkpoint was trained on: 1 not in the checkpoint "
                       "(e.g. 'x'), 2 of the checkpoint's missing (e.g. 'c')")

"""How a dataset's class list differs from the one a model was trained on, said in one line."""
from __future__ import annotations

from collections.abc import Sequence


def class_difference(found: Sequence[str], trained: Sequence[str]) -> str | None:
    """What differs between the classes ``found`` (a dataset's, by index) and ``trained`` (a
    checkpoint's); None when they are the same list.

    The same names in another order are called that, with the first index that differs: class
    indices are the model's outputs, so a reordered label map silently permutes every prediction.
    """
    found, trained = list(found), list(trained)
    if found == trained:
        return None
    if sorted(found) == sorted(trained):
        index = next(i for i, (a, b) in enumerate(zip(found, trained)) if a != b)
        return (f"lists the checkpoint's {len(trained)} classes in another order (index {index} is {found[index]!r} "
                f"here, {trained[index]!r} in the checkpoint): use the label map the checkpoint was trained with")
    extra = sorted(set(found) - set(trained))
    absent = sorted(set(trained) - set(found))
    details = [f"{len(names)} {what} (e.g. {names[0]!r})" for names, what in
               ((extra, "not in the checkpoint"), (absent, "of the checkpoint's missing")) if names]
    return (f"its {len(found)} classes differ from the {len(trained)} the checkpoint was trained on"
            + (": " + ", ".join(details) if details else ""))

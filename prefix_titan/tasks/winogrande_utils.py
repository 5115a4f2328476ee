"""WinoGrande's partial scoring: the two options fill the blank as alternative *contexts*, and the
model scores the shared continuation after the blank under each."""


def _blank(doc: dict) -> int:
    return doc["sentence"].index("_")


def contexts(doc: dict) -> list[str]:
    head = doc["sentence"][: _blank(doc)]
    return [head + doc["option1"], head + doc["option2"]]


def continuation(doc: dict) -> str:
    return doc["sentence"][_blank(doc) + 1 :].strip()


def context_index(doc: dict) -> int:
    return int(doc["answer"]) - 1  # "1" or "2": which context is right

import json


def add(a, b):
    return json.loads(json.dumps(a + b))

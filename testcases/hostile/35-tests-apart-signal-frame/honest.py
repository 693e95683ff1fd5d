import signal

signal.signal(signal.SIGINT, signal.default_int_handler)


def add(a, b):
    return a + b

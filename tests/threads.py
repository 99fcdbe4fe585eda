"""What the thread tests share: results computed from several threads at once equal the
sequential ones (the promise ``Predictor`` makes)."""

import threading


def assert_threads_match(work, inputs) -> None:
    """``work(x)`` on every input, one thread each, all at once: the same results as one after
    another. Results are dicts whose ``timings`` may differ."""
    sequential = [work(x) for x in inputs]
    results = [None] * len(inputs)

    def run(i):
        results[i] = work(inputs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, expected in zip(results, sequential, strict=True):
        got.pop("timings", None), expected.pop("timings", None)
        assert got == expected

from __future__ import annotations

import json
import os
import threading

import pytest

import carbonfast as cf
from tests.fakes.powercap import FakePowercap


def test_window_energy_is_the_exact_counter_difference(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    with meter.measure("step") as m:
        fake.add("intel-rapl:0", 2_500_000)
        fake.add("intel-rapl:0:0", 1_700_001)
        fake.add("intel-rapl:0:1", 300_007)
    assert m.domains == {"package-0": 2.5, "core-0": 1.700001, "dram-0": 0.300007}
    # core sits inside the package: the total is package + dram only.
    assert m.energy_j == 2.5 + 0.300007
    assert m.domain_kinds == {"package-0": "package", "core-0": "core", "dram-0": "dram"}
    assert m.label == "step"
    assert m.estimated is False
    assert m.duration_s > 0
    assert m.power_w == pytest.approx(m.energy_j / m.duration_s)


def test_a_wrap_inside_a_window_is_counted_exactly(tmp_path) -> None:
    fake = FakePowercap(tmp_path)
    fake.zone("intel-rapl:0", "package-0", energy_uj=990_000, max_uj=999_999)
    meter = cf.Meter(fake.root)
    with meter.measure() as m:
        fake.set("intel-rapl:0", 40_000)  # 10_000 to the top, 40_000 after it
    assert m.domains["package-0"] == 0.05
    assert meter._native.wraps()[0] == 1


def test_psys_is_reported_but_not_added(tmp_path) -> None:
    fake = FakePowercap(tmp_path)
    fake.zone("intel-rapl:0", "package-0", 0)
    fake.zone("intel-rapl:1", "psys", 0)
    meter = cf.Meter(fake.root)
    with meter.measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
        fake.add("intel-rapl:1", 9_000_000)
    assert m.domains == {"package-0": 1.0, "psys": 9.0}
    assert m.energy_j == 1.0


def test_measure_uses_the_environment_root(default_on: FakePowercap) -> None:
    with cf.measure() as m:
        default_on.add("intel-rapl:0", 1_000_000)
    assert m.energy_j == 1.0
    assert m.label is None


def test_an_open_measurement_reports_energy_so_far(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    with meter.measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
        assert not m.closed
        assert m.energy_j == 1.0
        fake.add("intel-rapl:0", 1_000_000)
    assert m.closed
    fake.add("intel-rapl:0", 5_000_000)  # after the window: not counted
    assert m.energy_j == 2.0


def test_decorator_forms_record_every_call(default_on: FakePowercap) -> None:
    @cf.measure
    def bare() -> int:
        default_on.add("intel-rapl:0", 1_000_000)
        return 1

    @cf.measure("labelled")
    def labelled() -> None:
        default_on.add("intel-rapl:0:1", 250_000)

    @cf.track
    def tracked(x: int) -> int:
        default_on.add("intel-rapl:0", 2_000_000)
        return x * 2

    assert bare() == 1
    labelled()
    labelled()
    assert tracked(21) == 42
    assert bare.energy.calls == 1 and bare.energy.energy_j == 1.0
    assert bare.energy.last.label.endswith("bare")
    assert labelled.energy.calls == 2 and labelled.energy.energy_j == 0.5
    assert labelled.energy.last.label == "labelled"
    assert tracked.energy.energy_j == 2.0
    assert tracked.__name__ == "tracked"


def test_track_with_arguments_and_exceptions(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)

    @cf.track(label="fails", meter=meter)
    def fails() -> None:
        fake.add("intel-rapl:0", 3_000_000)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        fails()
    # The call that raised still cost energy, and is counted.
    assert fails.energy.calls == 1
    assert fails.energy.energy_j == 3.0


def test_named_windows_nest_and_overlap(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    meter.begin("outer")
    fake.add("intel-rapl:0", 1_000_000)
    meter.begin("a")
    fake.add("intel-rapl:0", 2_000_000)
    meter.begin("b")
    fake.add("intel-rapl:0", 4_000_000)
    a = meter.end("a")  # a closes while b, which began inside it, stays open
    fake.add("intel-rapl:0", 8_000_000)
    b = meter.end("b")
    outer = meter.end("outer")
    assert (outer.energy_j, a.energy_j, b.energy_j) == (15.0, 6.0, 12.0)
    assert meter.open_windows == []


def test_window_name_errors_say_what_is_wrong(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    meter.begin("x")
    with pytest.raises(ValueError, match="'x' is already open"):
        meter.begin("x")
    with pytest.raises(ValueError, match=r"no open window named 'y' \(open: 'x'\)"):
        meter.end("y")


def test_windows_from_several_threads_each_see_exactly_their_energy(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    n = 8
    results: dict[int, cf.Measurement] = {}
    begun = threading.Barrier(n + 1)
    advanced = threading.Barrier(n + 1)

    def worker(i: int) -> None:
        meter.begin(f"t{i}")
        begun.wait()
        advanced.wait()
        results[i] = meter.end(f"t{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    begun.wait()
    fake.add("intel-rapl:0", 7_000_000)
    advanced.wait()
    for t in threads:
        t.join()
    assert [results[i].energy_j for i in range(n)] == [7.0] * n


def test_many_threads_hammering_one_meter_lose_nothing(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for k in range(200):
                with meter.measure(f"{i}-{k}") as m:
                    pass
                assert m.energy_j == 0.0
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert not any(meter._native.wraps())


def test_short_windows_say_they_are_coarse(fake: FakePowercap) -> None:
    with cf.Meter(fake.root).measure() as m:
        pass
    assert any("coarse" in n for n in m.notes)


def test_a_child_process_after_fork_measures(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    meter.begin("held-across-fork")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            with meter.measure() as m:
                fake.add("intel-rapl:0", 1_000_000)
            os.write(w, json.dumps(m.energy_j).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert json.loads(os.read(r, 100)) == 1.0
    os.close(r)
    assert meter.end("held-across-fork").energy_j == 1.0


def test_to_dict_is_json_ready(fake: FakePowercap) -> None:
    with cf.Meter(fake.root).measure("j") as m:
        fake.add("intel-rapl:0:1", 1_000_000)
    d = json.loads(json.dumps(m.to_dict()))
    assert d["energy_j"] == 1.0
    assert d["domains"]["dram-0"] == {
        "energy_j": 1.0,
        "kind": "dram",
        "estimated": False,
        "part": "ram",
    }
    assert d["label"] == "j"
    assert d["started_at"].endswith("+00:00")


def test_track_of_an_async_function_measures_the_awaited_run(fake: FakePowercap) -> None:
    import asyncio

    meter = cf.Meter(fake.root, history="off")

    @cf.track(meter=meter)
    async def work() -> int:
        await asyncio.sleep(0.1)
        return 7

    assert asyncio.run(work()) == 7
    assert work.energy.calls == 1  # type: ignore[attr-defined]
    assert work.energy.duration_s >= 0.09  # type: ignore[attr-defined]


def test_measure_of_an_async_function_with_attribution_measures_each_awaited_run(
    fake: FakePowercap, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import sys
    import time

    cls = sys.modules["carbonfast.measure"]._AttributedWindow
    opened: list[float] = []
    spans: list[float] = []
    enter, leave = cls.__enter__, cls.__exit__

    def spy_enter(self, *a):  # type: ignore[no-untyped-def]
        opened.append(time.monotonic())
        return enter(self, *a)

    def spy_exit(self, *a):  # type: ignore[no-untyped-def]
        spans.append(time.monotonic() - opened.pop(0))
        return leave(self, *a)

    monkeypatch.setattr(cls, "__enter__", spy_enter)
    monkeypatch.setattr(cls, "__exit__", spy_exit)
    meter = cf.Meter(fake.root, history="off")

    @cf.measure(meter=meter, attribute="process")
    async def work(s: float) -> None:
        await asyncio.sleep(s)

    async def both() -> None:  # interleaved on one thread
        await asyncio.gather(work(0.1), work(0.1))

    asyncio.run(both())
    assert len(spans) == 2 and min(spans) >= 0.09, spans


def test_track_of_a_generator_measures_its_iteration(fake: FakePowercap) -> None:
    import time

    meter = cf.Meter(fake.root, history="off")

    @cf.track(meter=meter)
    def items(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            time.sleep(0.03)
            yield i
        return "done"

    gen = items(4)
    assert items.energy.calls == 0  # type: ignore[attr-defined]  # nothing ran yet
    assert list(gen) == [0, 1, 2, 3]
    assert items.energy.calls == 1  # type: ignore[attr-defined]
    assert items.energy.duration_s >= 0.11  # type: ignore[attr-defined]


def test_track_of_an_async_generator_measures_its_iteration(fake: FakePowercap) -> None:
    import asyncio

    meter = cf.Meter(fake.root, history="off")

    @cf.track(meter=meter)
    async def items(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            await asyncio.sleep(0.03)
            yield i

    async def consume() -> list[int]:
        return [i async for i in items(4)]

    assert asyncio.run(consume()) == [0, 1, 2, 3]
    assert items.energy.calls == 1  # type: ignore[attr-defined]
    assert items.energy.duration_s >= 0.11  # type: ignore[attr-defined]

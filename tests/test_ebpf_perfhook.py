"""perfhook's parts that need no kernel: which CPUs it opens counters on,
and that a tracepoint it cannot resolve leaves no counter (the backend then
runs without them)."""

from kerntrace.backends.ebpf import perfhook


def test_online_cpu_lists():
    assert perfhook.online_cpus("0\n") == [0]
    assert perfhook.online_cpus("0-3,6,8-9\n") == [0, 1, 2, 3, 6, 8, 9]


def test_a_tracepoint_without_an_id_gives_no_counter(tmp_path):
    online = tmp_path / "online"
    online.write_text("0-1\n")
    assert perfhook.HookCounter.open(str(tmp_path), [("block", "block_rq_complete")],
                                     cpu_online=str(online)) is None


def test_missed_is_the_increase_since_the_last_call():
    class Fixed(perfhook.HookCounter):
        counts = [5, 5, 9]

        def total(self):
            return self.counts.pop(0)
    c = Fixed([])
    assert (c.missed(), c.missed(), c.missed()) == (5, 0, 4)


def test_the_filter_ioctl_is_perf_event_ioc_set_filter(monkeypatch):
    # _IOW('$', 6, char *) (include/uapi/linux/perf_event.h)
    monkeypatch.setattr(perfhook.platform, "machine", lambda: "x86_64")
    assert perfhook._ioc_nr(6, 8) == 0x40082406
    assert perfhook._ioc_nr(0) == 0x2400             # PERF_EVENT_IOC_ENABLE
    monkeypatch.setattr(perfhook.platform, "machine", lambda: "ppc64le")
    assert perfhook._ioc_nr(6, 8) is None      # its own numbering: no filter


def test_a_refused_filter_leaves_the_counter_counting_everything(tmp_path):
    with open(str(tmp_path / "f"), "w") as f:
        assert perfhook.set_filter(f.fileno(), "dev == 5") is False

"""`GpuCollector`: GPU utilisation and memory series, collected at scrape time.

Why a collector and not gauges: the values are read from torch when Prometheus scrapes, so there is no polling
thread and no stale value. The series themselves are declared in `catalogue.GPU_SPECS`, so the docs and the
dashboard checks see them like every other metric.
"""

from __future__ import annotations

import sys
from typing import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from afd_async.metrics.catalogue import GPU_SPECS


class GpuCollector(Collector):
    """Reports GPU utilisation and memory via torch.cuda, and nothing at all without a CUDA device.

    Collected at scrape time, so there is no polling thread and no stale value; torch is never imported
    here, so a process that does not use torch (teacher server, feeder) does not pay for it. Labelled by
    `device` only: Prometheus adds the scrape job (the role) and instance.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        torch = sys.modules.get("torch")
        try:
            # Never initialise CUDA from the scrape thread, and only report devices this process uses: a
            # query on another device would create a CUDA context (hundreds of MB) there.
            if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
                return
            devices = sorted({torch.cuda.current_device()} |
                             {i for i in range(torch.cuda.device_count()) if torch.cuda.memory_reserved(i) > 0})
        except Exception:  # a broken driver must not break the scrape
            return
        fams = {s.name: GaugeMetricFamily(s.name, s.help, labels=["device"]) for s in GPU_SPECS}
        for i in devices:
            lv = [str(i)]
            try:
                free, total = torch.cuda.mem_get_info(i)
                fams["afd_gpu_memory_used_bytes"].add_metric(lv, float(total - free))
                fams["afd_gpu_memory_total_bytes"].add_metric(lv, float(total))
                fams["afd_gpu_memory_allocated_bytes"].add_metric(lv, float(torch.cuda.memory_allocated(i)))
            except Exception:
                pass
            try:
                fams["afd_gpu_utilization_ratio"].add_metric(lv, torch.cuda.utilization(i) / 100.0)
            except Exception:  # no pynvml: utilisation unknown, memory still reported
                pass
        yield from (f for f in fams.values() if f.samples)

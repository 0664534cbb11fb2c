"""Config templates for the processors, as plain dicts (copy one and adapt it).

``data_aggregator_config`` is the spec's own example.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "batch_processor_config",
    "data_aggregator_config",
    "data_enricher_config",
    "data_filter_config",
    "data_joiner_config",
    "stream_processor_config",
    "windowed_aggregator_config",
]

data_aggregator_config: dict[str, Any] = {
    "group_by": ["date", "product_id"],
    "aggregations": {
        "quantity": "sum",
        "price": "mean",
        "revenue": "sum",
    },
}

data_filter_config: dict[str, Any] = {
    "condition": "price > 10 and region in ('north', 'south') and age is not null",
}

data_joiner_config: dict[str, Any] = {
    "how": "left",
    "on": ["product_id"],
    "suffix": "_right",
    "validate": "many_to_one",
}

data_enricher_config: dict[str, Any] = {
    "derived": ["revenue = quantity * price"],
    "date_parts": {"date": ["year", "month", "weekday"]},
    "buckets": [
        {
            "column": "age",
            "breaks": [30, 50],
            "labels": ["young", "middle", "senior"],
            "as": "age_group",
        }
    ],
}

windowed_aggregator_config: dict[str, Any] = {
    "time_column": "timestamp",
    "window": "1h",
    "slide": "15m",
    "group_by": ["product_id"],
    "aggregations": {"quantity": "sum", "price": "mean", "*": "count"},
}

batch_processor_config: dict[str, Any] = {
    "batch_size": 100_000,
    "format": "auto",
    "table": None,
    "if_exists": "append",
    "output": "polars",
}

stream_processor_config: dict[str, Any] = {
    "emit": "final",
    "allowed_lateness": "5m",
    "max_out_of_orderness": "1h",
    "partition_column": None,
    "idle_timeout": "5m",
    "output": "native",
}

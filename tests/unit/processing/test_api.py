"""The layer's public API matches the spec, config templates build, docstring examples run."""

from __future__ import annotations

import pytest

import data_pipeline.processing as processing
from data_pipeline.processing import config as templates


@pytest.mark.parametrize(
    ("template", "cls"),
    [
        ("data_aggregator_config", "DataAggregator"),
        ("data_filter_config", "DataFilter"),
        ("data_joiner_config", "DataJoiner"),
        ("data_enricher_config", "DataEnricher"),
        ("windowed_aggregator_config", "WindowedAggregator"),
        ("batch_processor_config", "BatchProcessor"),
        ("stream_processor_config", "StreamProcessor"),
    ],
)
def test_templates_build(template: str, cls: str) -> None:
    component = getattr(processing, cls)(name="from_template", config=getattr(templates, template))
    assert component.get_metadata()["status"] == "idle"


def test_spec_aggregator_template_is_verbatim() -> None:
    assert templates.data_aggregator_config == {
        "group_by": ["date", "product_id"],
        "aggregations": {"quantity": "sum", "price": "mean", "revenue": "sum"},
    }

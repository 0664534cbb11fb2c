"""Config templates for the transformers, as plain dicts (copy one and adapt it).

``missing_value_config`` is the spec's own example: ``fill`` with no ``value`` fills numeric
columns with their median and every other column with its mode.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "column_renamer_config",
    "column_selector_config",
    "custom_transformer_config",
    "data_type_config",
    "missing_value_config",
    "outlier_config",
]

missing_value_config: dict[str, Any] = {
    "strategy": "fill",
    "columns": ["age", "income", "education"],
}

outlier_config: dict[str, Any] = {
    "method": "iqr",
    "factor": 1.5,
    "action": "clip",
    "columns": ["price", "quantity"],
}

data_type_config: dict[str, Any] = {
    "columns": {
        "date": {"type": "date", "format": "%Y-%m-%d"},
        "quantity": "int",
        "price": "float",
        "region": "category",
    },
    "errors": "raise",
}

column_renamer_config: dict[str, Any] = {
    "mapping": {"Product ID": "product_id"},
    "function": "snake_case",
}

column_selector_config: dict[str, Any] = {
    "include": ["date", "product_id", "quantity", "price"],
}

custom_transformer_config: dict[str, Any] = {
    "expression": "revenue = price * quantity",
}

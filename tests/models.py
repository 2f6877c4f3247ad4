"""Model classes shared by tests. Tests that publish define their own subclasses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from microlib_kernel import Model, command


class Address(BaseModel):
    city: str
    zip: int | None = None


def make_models() -> tuple[type[Model], type[Model]]:
    """Fresh Order and Customer classes (each host publishes its own)."""

    class Customer(Model, endpoint="customers"):
        name: str
        email: str | None = None
        address: Address | None = None
        tags: list[str] = []

    class Order(Model, endpoint="orders"):
        customer_id: str | None = None
        items: list[dict] = Field(min_length=1)
        total: float = 0.0
        status: Literal["PENDING", "APPROVED", "SHIPPING", "COMPLETE", "CANCELED"] = "PENDING"
        code: str = Field(default="X", frozen=True)

        @field_validator("total")
        @classmethod
        def not_negative(cls, v: float) -> float:
            if v < 0:
                raise ValueError("total cannot be negative")
            return v

        @command(acl=["read"])
        def summary(self) -> dict:
            return {"summary": f"{self.id}:{self.total}"}

        def on_update(self, changes: dict) -> dict:
            if "items" in changes:
                changes["total"] = sum(i.get("price", 0) for i in changes["items"])
            return changes

        def on_delete(self) -> None:
            if self.status not in ("COMPLETE", "CANCELED"):
                raise ValueError("order must be canceled or completed")

    return Order, Customer

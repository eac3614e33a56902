"""A small inventory. Try: fim-server complete examples/inventory.py:25:9"""

from dataclasses import dataclass


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0


class Inventory:
    def __init__(self):
        self.items = {}

    def add(self, item: Item) -> None:
        self.items[item.name] = item

    def total_value(self) -> float:
        return sum(item.price * item.quantity for item in self.items.values())

    def remove(self, name: str) -> Item:
        """Remove the item called `name` and return it."""
        

if __name__ == "__main__":
    inventory = Inventory()
    inventory.add(Item("apple", 0.5, 10))
    print(inventory.total_value())

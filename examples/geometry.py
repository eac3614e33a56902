"""Shapes. Try: fim-server complete examples/geometry.py:17:16"""

import math


class Circle:
    def __init__(self, radius: float) -> None:
        self.radius = radius

    def area(self) -> float:
        return math.pi * self.radius ** 2

    def circumference(self) -> float:
        return 2 * math.pi * self.radius

    def diameter(self) -> float:
        return 

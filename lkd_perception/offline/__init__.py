"""Offline processing: the capabilities on recorded bags without a ROS graph (``lkd run``), and
many bags at once on Ray (``lkd evaluate fleet``)."""

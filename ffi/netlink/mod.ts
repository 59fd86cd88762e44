/**
 * rtnetlink for flanneld: open a {@link NetlinkSocket}, then pass it as the first argument
 * of the per-object functions (links, addresses, routes, neighbours, FDB entries), which
 * take any {@link Requester}; notifications come from a {@link NotificationSource}.
 * @module
 */

export {
  kernelNotifications,
  NetlinkSocket,
  type OpenOptions,
  RequestChannel,
  withNetlinkSocket,
} from "./socket.ts";
export {
  IFA_F_DEPRECATED,
  IFA_F_NODAD,
  IFA_F_PERMANENT,
  IFA_F_TEMPORARY,
  isNetlinkError,
  NetlinkError,
  NetlinkParseError,
  type NlMessage,
  NLMSG_OVERRUN,
  type NotificationSource,
  NTF_SELF,
  NUD_PERMANENT,
  type Requester,
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTN_BLACKHOLE,
  RTN_UNICAST,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_LINK,
  RTNLGRP_NEIGH,
  type Subscription,
} from "./message.ts";
export {
  decodeLink,
  type Link,
  linkByIndex,
  linkByName,
  linkDel,
  linkList,
  linkSetDown,
  linkSetMAC,
  linkSetMTU,
  linkSetUp,
  vxlanCreate,
  type VxlanInfo,
  type VxlanSpec,
} from "./link.ts";
export {
  type Addr,
  addrAdd,
  addrDel,
  type AddrFilter,
  addrList,
  addrReplace,
  type AddrSpec,
  formatAddr,
} from "./addr.ts";
export {
  decodeRoute,
  defaultRouteDevs,
  formatRoute,
  type Route,
  routeAdd,
  routeDel,
  type RouteFilter,
  routeGet,
  routeList,
  routeReplace,
  type RouteSpec,
} from "./route.ts";
export {
  decodeFdb,
  decodeNeigh,
  fdbDel,
  type FdbEntry,
  fdbList,
  fdbReplace,
  type Neigh,
  neighDel,
  neighIndex,
  neighList,
  neighReplace,
} from "./neigh.ts";

// Alerts: the area's tabs (channels, rules, deliveries) and `#/alerts`, which opens the first tab
// the signed-in user may see.

import { h } from '../dom.js';
import { t } from '../i18n.js';

const tabs = () => [
  ['/alerts/channels', t('alerts.channels'), 'admin'],
  ['/alerts/rules', t('alerts.rules'), 'operator'],
  ['/alerts/deliveries', t('alerts.deliveries'), 'operator'],
];

/** The area's sub-navigation; `current` is the path of the page showing it. */
export function alertTabs(ctx, current) {
  return h('nav', { class: 'tabs', 'aria-label': t('nav.alerts') },
    h('ul', {}, tabs().filter(([, , role]) => ctx.session.can(role)).map(([path, label]) =>
      h('li', {}, h('a', { href: `#${path}`, 'aria-current': path === current ? 'page' : null }, label)))));
}

/** What a delivery's state looks like, with the same badge colours as runs. */
export const DELIVERY_STATES = ['pending', 'sent', 'failed'];

export async function render(page, params, ctx) {
  // Replace (not push) the address, so Back does not return here and bounce forward again.
  location.replace(`#${ctx.session.can('admin') ? '/alerts/channels' : '/alerts/rules'}`);
}
